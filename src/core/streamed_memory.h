// Memory that is streamed from end to end again and again (repacked weights every decode step,
// the bandwidth probe's buffer): large buffers are 2 MiB-aligned and asked to use transparent
// huge pages, so a pass over them pays one TLB miss per 2 MiB instead of one per 4 KiB page.
#pragma once

#include <cstddef>

namespace fathom {

// Buffers of 2 MiB and more are 2 MiB-aligned, rounded up to whole 2 MiB and advised
// MADV_HUGEPAGE (most distributions default THP to madvise; without THP the advice is ignored
// and the buffer works the same); smaller ones are 64-byte aligned. Free with std::free.
// nullptr when the memory cannot be had.
void* allocate_streamed(size_t bytes);

}  // namespace fathom
