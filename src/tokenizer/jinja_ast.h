// Syntax tree of the Jinja subset. One node struct per layer (expressions, statements) with a
// kind tag keeps the tree flat and the evaluator a pair of switches.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_value.h"

namespace fathom::jinja {

// Nesting allowed in a template: parenthesized or bracketed expressions, operator and filter
// chains, unary operators and nested blocks. The parser, the evaluator and the tree's destructor
// each recurse once per level, so a deeper template is a syntax error rather than a stack
// overflow. Real chat templates nest under 20 levels.
inline constexpr int kMaxTemplateDepth = 256;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind : uint8_t {
  kLiteral,   // literal: a constant (string, number, true/false/none)
  kName,      // name: variable lookup
  kList,      // operands: elements of [a, b]
  kTuple,     // operands: elements of (a, b)
  kDict,      // operands: key, value, key, value, ... of {k: v}
  kGetAttr,   // operands[0].name
  kGetItem,   // operands[0][operands[1]]
  kSlice,     // operands[0][operands[1]:operands[2]:operands[3]]; absent bounds are null
  kCall,      // operands[0](operands[1..], keywords)
  kFilter,    // operands[0] | name(operands[1..], keywords)
  kTest,      // operands[0] is [not] name(operands[1..], keywords)
  kUnary,     // name ("-", "+", "not") applied to operands[0]
  kBinary,    // operands[0] name operands[1] for + - * / // % ** ~
  kAnd,       // operands[0] and operands[1] (short-circuit, returns an operand)
  kOr,        // operands[0] or operands[1]
  kCompare,   // operands[0] ops[0] operands[1] ops[1] operands[2] ... (python chaining)
  kCondition, // operands[1] if operands[0] else operands[2] (operands[2] may be null)
};

struct Expr {
  ExprKind kind;                                        // which expression
  SourcePos pos;                                        // where it starts, for errors
  Value literal;                                        // kLiteral value
  std::string name;                                     // variable, attribute, filter, test or operator
  std::vector<ExprPtr> operands;                        // sub-expressions, meaning per kind above
  std::vector<std::pair<std::string, ExprPtr>> keywords;  // kCall/kFilter/kTest keyword arguments
  std::vector<std::string> compare_ops;                 // kCompare operators: == != < <= > >= in "not in"
  bool negated = false;                                 // kTest written `is not`
  int height = 1;                                       // levels in this subtree (<= kMaxTemplateDepth)
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

// Left side of `set` and `for`: a name, a tuple of names, or `namespace.attribute`.
struct AssignTarget {
  std::vector<std::string> names;  // one name, or several for tuple unpacking (`for k, v in ...`)
  std::string attribute;           // non-empty for `set ns.attr = ...` (names[0] is the namespace)
  bool is_tuple = false;           // `for k, v` / `set a, b`: unpack the value
};

struct MacroParam {
  std::string name;       // parameter name
  ExprPtr default_value;  // null when the parameter is required
};

enum class NodeKind : uint8_t {
  kText,      // text: output verbatim
  kOutput,    // {{ expr }}
  kIf,        // branches: (condition, body) pairs; a null condition is the else branch
  kFor,       // for target in expr [if filter]: body [else: else_body]
  kSet,       // set target = expr
  kSetBlock,  // set target %} body {% endset: target = rendered body
  kMacro,     // macro name(params): body
  kBreak,     // {% break %}
  kContinue,  // {% continue %}
};

struct Node {
  NodeKind kind;                                 // which statement
  SourcePos pos;                                 // where the tag starts
  std::string text;                              // kText text; kMacro name
  ExprPtr expr;                                  // kOutput/kSet value, kFor iterable
  ExprPtr loop_filter;                           // kFor `if` condition (null: none)
  AssignTarget target;                           // kFor/kSet/kSetBlock target
  std::vector<std::pair<ExprPtr, NodeList>> branches;  // kIf branches in order
  NodeList body;                                 // kFor/kSetBlock/kMacro body
  NodeList else_body;                            // kFor body when the iterable is empty
  std::vector<MacroParam> params;                // kMacro parameters
};

// A parsed template; owns the tree.
struct Template {
  NodeList body;  // top-level nodes
};

}  // namespace fathom::jinja
