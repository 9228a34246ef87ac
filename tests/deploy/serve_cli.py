"""What the deployment checks share: the options of the real `fathom serve`, and the report."""
import re
import subprocess
import sys


def serve_options(fathom):
    """Every option `fathom serve --help` lists (long and short forms)."""
    text = subprocess.run([fathom, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text))


def unknown_options(args, options):
    """The words of a command line that look like options but are not `fathom serve`'s."""
    return [a for a in args if a.startswith("-") and not re.fullmatch(r"-?\d+", a) and a not in options]


def report(name, problems):
    for p in problems:
        print("  " + p)
    print(f"{name}: {len(problems)} problems")
    sys.exit(1 if problems else 0)
