#include "tokenizer/jinja_eval.h"

#include <unordered_map>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_ops.h"

namespace fathom::jinja {

namespace {

// Adds the position of the expression or statement that failed. Applied once, where an
// operation fails, so nested expressions do not stack positions.
Status at(SourcePos pos, const Status& status) {
  return Status(status.code(), "template error at " + format_pos(pos) + ": " + status.message());
}

template <typename T>
Expected<T> at(SourcePos pos, Expected<T> result) {
  if (result) return result;
  return at(pos, result.status());
}

// Statements and expressions being evaluated at once, so a macro that recurses without end stops
// here, not at the stack's end. What parses nests at most 2 * kMaxTemplateDepth (blocks, then an
// expression inside). A macro call's frames take about 16 KB of stack under AddressSanitizer
// (the fuzz build), where 4 * kMaxTemplateDepth with a macro counted as two levels overflowed
// 8 MB; it now counts four (plus the call's statement and expression), so recursion stops
// after about 100 calls.
constexpr int kMaxEvalDepth = 2 * kMaxTemplateDepth;
// Statements executed and loop iterations in one render, about a second of work: a 1,000-message
// conversation takes a few 10^4 with the shipped templates.
constexpr int64_t kMaxRenderSteps = 1'000'000;
constexpr size_t kMaxRenderedBytes = size_t{16} << 20;  // text one render (or set block) may produce

class Evaluator {
 public:
  explicit Evaluator(const Value& context) : context_(context), globals_(make_globals()) { frames_.emplace_back(); }

  Expected<std::string> run(const Template& tmpl) {
    std::string out;
    FATHOM_ASSIGN_OR_RETURN(Flow flow, exec_list(tmpl.body, out));
    if (flow != Flow::kNormal) return error(ErrorCode::kInvalidArgument, "'break' or 'continue' outside a loop");
    return out;
  }

 private:
  // How a statement list ended: normally, or by {% break %} / {% continue %} bound for the
  // innermost loop.
  enum class Flow { kNormal, kBreak, kContinue };

  struct Frame {
    std::unordered_map<std::string, Value> vars;  // names assigned in this scope
    bool macro_root = false;  // a macro call: lookups skip to the template's top level after it
  };

  Value lookup(const std::string& name) const {
    for (size_t i = frames_.size(); i-- > 0;) {
      const auto it = frames_[i].vars.find(name);
      if (it != frames_[i].vars.end()) return it->second;
      if (frames_[i].macro_root && i > 0) {
        const auto top = frames_[0].vars.find(name);
        if (top != frames_[0].vars.end()) return top->second;
        break;
      }
    }
    if (context_.is_object()) {
      if (const Value* v = context_.as_object().find(name)) return *v;
    }
    if (const Value* v = globals_.find(name)) return *v;
    return Value::undefined("'" + name + "' is undefined");
  }

  // ---- statements ---------------------------------------------------------------------------

  Expected<Flow> exec_list(const NodeList& nodes, std::string& out) {
    for (const NodePtr& node : nodes) {
      FATHOM_ASSIGN_OR_RETURN(Flow flow, exec(*node, out));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  // One level of evaluation recursion, released when the evaluating function returns.
  class Nesting {
   public:
    explicit Nesting(Evaluator* evaluator) : evaluator_(evaluator) { ++evaluator_->depth_; }
    ~Nesting() { --evaluator_->depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    Status check(SourcePos pos) const {
      if (evaluator_->depth_ <= kMaxEvalDepth) return Status::ok();
      return at(pos, error(ErrorCode::kInvalidArgument,
                           strprintf("chat template evaluation nested deeper than %d levels "
                                     "(a macro that calls itself without end?)",
                                     kMaxEvalDepth)));
    }

   private:
    Evaluator* evaluator_;
  };

  // Loops nest, so a short template can ask for 10^10 iterations; a render that runs past the
  // step or output budget is an error instead of a stuck worker.
  Status take_step(SourcePos pos, const std::string& out) {
    if (++steps_ > kMaxRenderSteps) {
      return at(pos, error(ErrorCode::kInvalidArgument,
                           strprintf("chat template rendering took more than %lld steps", static_cast<long long>(kMaxRenderSteps))));
    }
    if (out.size() > kMaxRenderedBytes) {
      return at(pos, error(ErrorCode::kInvalidArgument,
                           strprintf("chat template output is larger than %zu bytes", kMaxRenderedBytes)));
    }
    return Status::ok();
  }

  Expected<Flow> exec(const Node& node, std::string& out) {
    const Nesting nesting(this);
    FATHOM_RETURN_IF_ERROR(nesting.check(node.pos));
    FATHOM_RETURN_IF_ERROR(take_step(node.pos, out));
    switch (node.kind) {
      case NodeKind::kText:
        out += node.text;
        return Flow::kNormal;
      case NodeKind::kOutput: {
        FATHOM_ASSIGN_OR_RETURN(Value v, eval(*node.expr));
        out += to_str(v);
        return Flow::kNormal;
      }
      case NodeKind::kIf:
        for (const auto& [condition, body] : node.branches) {
          bool taken = true;
          if (condition) {
            FATHOM_ASSIGN_OR_RETURN(Value v, eval(*condition));
            taken = v.truthy();
          }
          if (taken) return exec_list(body, out);
        }
        return Flow::kNormal;
      case NodeKind::kFor:
        FATHOM_RETURN_IF_ERROR(exec_for(node, out));
        return Flow::kNormal;
      case NodeKind::kSet: {
        FATHOM_ASSIGN_OR_RETURN(Value v, eval(*node.expr));
        FATHOM_RETURN_IF_ERROR(assign(node.target, std::move(v), node.pos));
        return Flow::kNormal;
      }
      case NodeKind::kSetBlock: {
        std::string captured;
        FATHOM_ASSIGN_OR_RETURN(Flow flow, exec_list(node.body, captured));
        FATHOM_RETURN_IF_ERROR(assign(node.target, Value(std::move(captured)), node.pos));
        return flow;
      }
      case NodeKind::kMacro:
        frames_.back().vars[node.text] = make_macro(node);
        return Flow::kNormal;
      case NodeKind::kBreak:
        return Flow::kBreak;
      case NodeKind::kContinue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  Status assign(const AssignTarget& target, Value value, SourcePos pos) {
    if (!target.attribute.empty()) {
      const Value ns = lookup(target.names[0]);
      if (!ns.is_namespace()) {
        return at(pos, error(ErrorCode::kInvalidArgument, "cannot assign attribute on non-namespace object '" +
                                                              target.names[0] + "'"));
      }
      if (value.holds_namespace()) {
        return at(pos, error(ErrorCode::kUnsupported, "a namespace attribute cannot hold a namespace ('" +
                                                          target.names[0] + "." + target.attribute + "')"));
      }
      if (value.depth() + 1 > kMaxValueDepth) {
        return at(pos, error(ErrorCode::kInvalidArgument,
                             strprintf("value nested deeper than %d levels", kMaxValueDepth)));
      }
      ns.namespace_attributes().set(target.attribute, std::move(value));
      return Status::ok();
    }
    if (!target.is_tuple) {
      frames_.back().vars[target.names[0]] = std::move(value);
      return Status::ok();
    }
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, at(pos, iterate(value)));
    if (items.size() != target.names.size()) {
      return at(pos, error(ErrorCode::kInvalidArgument,
                           strprintf("ValueError: expected %zu values to unpack, got %zu", target.names.size(), items.size())));
    }
    for (size_t i = 0; i < items.size(); ++i) frames_.back().vars[target.names[i]] = std::move(items[i]);
    return Status::ok();
  }

  // The `loop` variable of one iteration.
  Value loop_object(const std::vector<Value>& items, size_t index) {
    const int64_t length = static_cast<int64_t>(items.size());
    const int64_t i = static_cast<int64_t>(index);
    Object loop;
    loop.set("index", Value(i + 1));
    loop.set("index0", Value(i));
    loop.set("revindex", Value(length - i));
    loop.set("revindex0", Value(length - i - 1));
    loop.set("first", Value(i == 0));
    loop.set("last", Value(i == length - 1));
    loop.set("length", Value(length));
    loop.set("depth", Value(1));
    loop.set("depth0", Value(0));
    if (index > 0) loop.set("previtem", items[index - 1]);
    if (index + 1 < items.size()) loop.set("nextitem", items[index + 1]);
    loop.set("cycle", Value::callable("cycle", [i](const CallArgs& args) -> Expected<Value> {
      if (args.positional.empty()) return error(ErrorCode::kInvalidArgument, "TypeError: no items for cycling given");
      return args.positional[static_cast<size_t>(i) % args.positional.size()];
    }));
    return Value::object(std::move(loop));
  }

  Status exec_for(const Node& node, std::string& out) {
    FATHOM_ASSIGN_OR_RETURN(Value iterable, eval(*node.expr));
    FATHOM_ASSIGN_OR_RETURN(std::vector<Value> items, at(node.expr->pos, iterate(iterable)));
    if (node.loop_filter) {
      // The filter sees the loop variable but not `loop`, as in jinja2.
      std::vector<Value> kept;
      for (Value& item : items) {
        FATHOM_RETURN_IF_ERROR(take_step(node.pos, out));
        frames_.emplace_back();
        Status bound = assign(node.target, item, node.pos);
        Expected<Value> keep = bound.is_ok() ? eval(*node.loop_filter) : Expected<Value>(bound);
        frames_.pop_back();
        if (!keep) return keep.status();
        if (keep->truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      frames_.emplace_back();
      Expected<Flow> flow = exec_list(node.else_body, out);
      frames_.pop_back();
      return flow.status();
    }
    for (size_t i = 0; i < items.size(); ++i) {
      FATHOM_RETURN_IF_ERROR(take_step(node.pos, out));
      frames_.emplace_back();
      frames_.back().vars["loop"] = loop_object(items, i);
      Status bound = assign(node.target, items[i], node.pos);
      Expected<Flow> flow = bound.is_ok() ? exec_list(node.body, out) : Expected<Flow>(bound);
      frames_.pop_back();
      if (!flow) return flow.status();
      if (*flow == Flow::kBreak) break;
    }
    return Status::ok();
  }

  Value make_macro(const Node& node) {
    const Node* macro = &node;
    return Value::callable(node.text, [this, macro](const CallArgs& args) -> Expected<Value> {
      // The call machinery (std::function, this lambda, a scope) weighs about two levels of stack.
      const Nesting call(this), scope(this);
      FATHOM_RETURN_IF_ERROR(scope.check(macro->pos));
      if (args.positional.size() > macro->params.size()) {
        return error(ErrorCode::kInvalidArgument, "TypeError: macro '" + macro->text + "' takes not more than " +
                                                      std::to_string(macro->params.size()) + " argument(s)");
      }
      Frame frame;
      frame.macro_root = true;
      frames_.push_back(std::move(frame));
      Status status;
      for (size_t i = 0; i < macro->params.size() && status.is_ok(); ++i) {
        const MacroParam& param = macro->params[i];
        std::optional<Value> value;
        if (i < args.positional.size()) value = args.positional[i];
        for (const auto& [key, v] : args.keyword) {
          if (key == param.name) value = v;
        }
        if (!value && param.default_value) {
          Expected<Value> fallback = eval(*param.default_value);
          if (!fallback) status = fallback.status();
          else value = std::move(fallback).value();
        }
        if (!value) value = Value::undefined("parameter '" + param.name + "' was not provided");
        frames_.back().vars[param.name] = std::move(*value);
      }
      for (const auto& [key, v] : args.keyword) {
        bool known = false;
        for (const MacroParam& param : macro->params) known = known || param.name == key;
        if (!known) status = error(ErrorCode::kInvalidArgument, "TypeError: macro '" + macro->text +
                                                                    "' takes no keyword argument '" + key + "'");
      }
      std::string out;
      if (status.is_ok()) {
        Expected<Flow> flow = exec_list(macro->body, out);
        if (!flow) status = flow.status();
      }
      frames_.pop_back();
      if (!status.is_ok()) return status;
      return Value(std::move(out));
    });
  }

  // ---- expressions --------------------------------------------------------------------------

  Expected<CallArgs> eval_args(const Expr& e, size_t first_operand) {
    CallArgs args;
    for (size_t i = first_operand; i < e.operands.size(); ++i) {
      FATHOM_ASSIGN_OR_RETURN(Value v, eval(*e.operands[i]));
      args.positional.push_back(std::move(v));
    }
    for (const auto& [key, expr] : e.keywords) {
      FATHOM_ASSIGN_OR_RETURN(Value v, eval(*expr));
      args.keyword.emplace_back(key, std::move(v));
    }
    return args;
  }

  Expected<Value> eval_compare(const Expr& e) {
    FATHOM_ASSIGN_OR_RETURN(Value left, eval(*e.operands[0]));
    for (size_t i = 0; i < e.compare_ops.size(); ++i) {
      FATHOM_ASSIGN_OR_RETURN(Value right, eval(*e.operands[i + 1]));
      const std::string& op = e.compare_ops[i];
      bool result = false;
      if (op == "==" || op == "!=") {
        result = values_equal(left, right) == (op == "==");
      } else if (op == "in" || op == "not in") {
        FATHOM_ASSIGN_OR_RETURN(bool found, at(e.pos, contains(right, left)));
        result = found == (op == "in");
      } else {
        if (left.is_undefined()) return at(e.pos, undefined_error(left));
        if (right.is_undefined()) return at(e.pos, undefined_error(right));
        const bool swap = op == ">" || op == "<=";
        FATHOM_ASSIGN_OR_RETURN(bool less, at(e.pos, swap ? value_less(right, left) : value_less(left, right)));
        result = (op == "<" || op == ">") ? less : !less;
      }
      if (!result) return Value(false);
      left = std::move(right);
    }
    return Value(true);
  }

  // Every value an expression produces is checked against kMaxValueDepth, so the recursive
  // printers, comparisons and destructors never meet a deeper one.
  Expected<Value> eval(const Expr& e) {
    const Nesting nesting(this);
    FATHOM_RETURN_IF_ERROR(nesting.check(e.pos));
    FATHOM_ASSIGN_OR_RETURN(Value v, eval_unchecked(e));
    if (v.depth() > kMaxValueDepth) {
      return at(e.pos, error(ErrorCode::kInvalidArgument, strprintf("value nested deeper than %d levels", kMaxValueDepth)));
    }
    if (v.weight() > kMaxValueWeight) {
      return at(e.pos, error(ErrorCode::kInvalidArgument,
                             strprintf("MemoryError: value of more than %lld elements and string bytes",
                                       static_cast<long long>(kMaxValueWeight))));
    }
    return v;
  }

  Expected<Value> eval_unchecked(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLiteral:
        return e.literal;
      case ExprKind::kName:
        return lookup(e.name);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        std::vector<Value> items;
        for (const ExprPtr& item : e.operands) {
          FATHOM_ASSIGN_OR_RETURN(Value v, eval(*item));
          items.push_back(std::move(v));
        }
        return Value::array(std::move(items), e.kind == ExprKind::kTuple);
      }
      case ExprKind::kDict: {
        Object object;
        for (size_t i = 0; i + 1 < e.operands.size(); i += 2) {
          FATHOM_ASSIGN_OR_RETURN(Value key, eval(*e.operands[i]));
          if (!key.is_string()) {
            return at(e.operands[i]->pos, error(ErrorCode::kUnsupported, std::string("unsupported construct: dict literal key of type ") +
                                                                             key.type_name() + " (only str keys)"));
          }
          FATHOM_ASSIGN_OR_RETURN(Value value, eval(*e.operands[i + 1]));
          object.set(key.as_string(), std::move(value));
        }
        return Value::object(std::move(object));
      }
      case ExprKind::kGetAttr: {
        FATHOM_ASSIGN_OR_RETURN(Value object, eval(*e.operands[0]));
        return at(e.pos, get_attribute(object, e.name));
      }
      case ExprKind::kGetItem: {
        FATHOM_ASSIGN_OR_RETURN(Value object, eval(*e.operands[0]));
        FATHOM_ASSIGN_OR_RETURN(Value key, eval(*e.operands[1]));
        return at(e.pos, get_item(object, key));
      }
      case ExprKind::kSlice: {
        FATHOM_ASSIGN_OR_RETURN(Value object, eval(*e.operands[0]));
        Value bounds[3];
        for (int i = 0; i < 3; ++i) {
          if (e.operands[i + 1]) {
            FATHOM_ASSIGN_OR_RETURN(bounds[i], eval(*e.operands[i + 1]));
          }
        }
        return at(e.pos, get_slice(object, bounds[0], bounds[1], bounds[2]));
      }
      case ExprKind::kCall: {
        FATHOM_ASSIGN_OR_RETURN(Value callee, eval(*e.operands[0]));
        FATHOM_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
        Expected<Value> result = call_value(callee, args);
        // Errors from inside a macro body already carry their own position.
        if (!result && result.status().message().rfind("template error at ", 0) == 0) return result;
        return at(e.pos, std::move(result));
      }
      case ExprKind::kFilter: {
        FATHOM_ASSIGN_OR_RETURN(Value input, eval(*e.operands[0]));
        FATHOM_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
        return at(e.pos, apply_filter(e.name, input, args));
      }
      case ExprKind::kTest: {
        FATHOM_ASSIGN_OR_RETURN(Value input, eval(*e.operands[0]));
        FATHOM_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, 1));
        FATHOM_ASSIGN_OR_RETURN(bool passed, at(e.pos, apply_test(e.name, input, args)));
        return Value(passed != e.negated);
      }
      case ExprKind::kUnary: {
        FATHOM_ASSIGN_OR_RETURN(Value operand, eval(*e.operands[0]));
        if (e.name == "not") return Value(!operand.truthy());
        if (e.name == "-") return at(e.pos, unary_minus(operand));
        if (operand.is_undefined()) return at(e.pos, undefined_error(operand));
        if (!operand.is_number()) {
          return at(e.pos, error(ErrorCode::kInvalidArgument,
                                 std::string("TypeError: bad operand type for unary +: '") + operand.type_name() + "'"));
        }
        return operand.is_bool() ? Value(operand.as_int()) : operand;
      }
      case ExprKind::kBinary: {
        FATHOM_ASSIGN_OR_RETURN(Value left, eval(*e.operands[0]));
        FATHOM_ASSIGN_OR_RETURN(Value right, eval(*e.operands[1]));
        return at(e.pos, binary_operation(e.name, left, right));
      }
      case ExprKind::kAnd: {
        FATHOM_ASSIGN_OR_RETURN(Value left, eval(*e.operands[0]));
        if (!left.truthy()) return left;
        return eval(*e.operands[1]);
      }
      case ExprKind::kOr: {
        FATHOM_ASSIGN_OR_RETURN(Value left, eval(*e.operands[0]));
        if (left.truthy()) return left;
        return eval(*e.operands[1]);
      }
      case ExprKind::kCompare:
        return eval_compare(e);
      case ExprKind::kCondition: {
        FATHOM_ASSIGN_OR_RETURN(Value test, eval(*e.operands[0]));
        if (test.truthy()) return eval(*e.operands[1]);
        if (e.operands[2]) return eval(*e.operands[2]);
        return Value::undefined(strprintf("the inline if-expression on line %d evaluated to false and no else section was defined.",
                                          e.pos.line));
      }
    }
    return error(ErrorCode::kInternal, "unknown expression kind");
  }

  Value context_;              // the caller's variables (a dict)
  Object globals_;             // builtin functions, looked up after the context
  std::vector<Frame> frames_;  // scopes, innermost last; frames_[0] is the template's top level
  int depth_ = 0;              // exec/eval calls now open (see Nesting)
  int64_t steps_ = 0;          // statements executed so far (see take_step)
};

}  // namespace

Expected<std::string> render(const Template& tmpl, const Value& context) {
  Evaluator evaluator(context);
  return evaluator.run(tmpl);
}

}  // namespace fathom::jinja
