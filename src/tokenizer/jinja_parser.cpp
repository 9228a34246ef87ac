#include "tokenizer/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

namespace fathom::jinja {

namespace {

// Tags jinja2 knows that this interpreter deliberately leaves out; named in the error so that a
// template author sees what to change.
constexpr std::string_view kUnsupportedTags[] = {"include", "import", "from", "extends", "block",
                                                 "call", "filter", "with", "autoescape", "do",
                                                 "trans", "generation", "endgeneration"};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Expected<std::unique_ptr<Template>> run() {
    auto tmpl = std::make_unique<Template>();
    std::string stopped;
    FATHOM_ASSIGN_OR_RETURN(tmpl->body, parse_nodes({}, &stopped));
    return tmpl;
  }

 private:
  const Token& cur() const { return tokens_[index_]; }
  const Token& peek(size_t ahead = 1) const { return tokens_[std::min(index_ + ahead, tokens_.size() - 1)]; }
  void advance() {
    if (index_ + 1 < tokens_.size()) ++index_;
  }
  bool is_op(std::string_view op) const { return cur().kind == TokenKind::kOperator && cur().text == op; }
  bool is_name(std::string_view name) const { return cur().kind == TokenKind::kName && cur().text == name; }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText: return "template text";
      case TokenKind::kVarBegin: return "'{{'";
      case TokenKind::kVarEnd: return "'}}'";
      case TokenKind::kBlockBegin: return "'{%'";
      case TokenKind::kBlockEnd: return "'%}'";
      case TokenKind::kEnd: return "end of template";
      case TokenKind::kString: return "string literal";
      default: return "'" + t.text + "'";
    }
  }

  Status syntax_error(const std::string& message) const {
    return error(ErrorCode::kInvalidArgument, "template syntax error at " + format_pos(cur().pos) + ": " + message);
  }
  Status unsupported(const std::string& construct, SourcePos pos) const {
    return error(ErrorCode::kUnsupported, "unsupported template construct " + construct + " at " + format_pos(pos));
  }

  Status expect_op(std::string_view op) {
    if (!is_op(op)) return syntax_error("expected '" + std::string(op) + "', found " + describe(cur()));
    advance();
    return Status::ok();
  }
  Status expect_name(std::string_view name) {
    if (!is_name(name)) return syntax_error("expected '" + std::string(name) + "', found " + describe(cur()));
    advance();
    return Status::ok();
  }
  Status expect_block_end() {
    if (cur().kind != TokenKind::kBlockEnd) return syntax_error("expected end of statement '%}', found " + describe(cur()));
    advance();
    return Status::ok();
  }
  Expected<std::string> expect_identifier() {
    if (cur().kind != TokenKind::kName) return syntax_error("expected a name, found " + describe(cur()));
    std::string name = cur().text;
    advance();
    return name;
  }

  // One level of parser recursion, released when the parsing function returns.
  class Nesting {
   public:
    explicit Nesting(Parser* parser) : parser_(parser) { ++parser_->depth_; }
    ~Nesting() { --parser_->depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    Status check() const {
      if (parser_->depth_ <= kMaxTemplateDepth) return Status::ok();
      return parser_->too_deep(parser_->cur().pos);
    }

   private:
    Parser* parser_;
  };

  Status too_deep(SourcePos pos) const {
    return error(ErrorCode::kInvalidArgument, strprintf("chat template nested deeper than %d levels at %s",
                                                        kMaxTemplateDepth, format_pos(pos).c_str()));
  }

  // Chains (`a + b + c`, `x | f | g`, `a.b.c`) grow the tree without recursing in the parser, so
  // each composite node's height is checked as it is completed.
  Expected<ExprPtr> sealed(ExprPtr node) {
    int tallest = 0;
    for (const ExprPtr& operand : node->operands) {
      if (operand) tallest = std::max(tallest, operand->height);
    }
    for (const auto& [key, value] : node->keywords) tallest = std::max(tallest, value->height);
    node->height = tallest + 1;
    if (node->height > kMaxTemplateDepth) return too_deep(node->pos);
    return node;
  }

  ExprPtr make(ExprKind kind, SourcePos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  // ---- statements -------------------------------------------------------------------------

  // Parses nodes until a block tag named in `stop_tags`; consumes `{%` and the tag name and
  // reports which tag stopped it. With no stop tags, parses to the end of the template.
  Expected<NodeList> parse_nodes(std::initializer_list<std::string_view> stop_tags, std::string* stopped) {
    NodeList nodes;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::kEnd) {
        if (stop_tags.size() == 0) return nodes;
        std::string expected;
        for (auto tag : stop_tags) expected += (expected.empty() ? "'" : " or '") + std::string(tag) + "'";
        return syntax_error("unexpected end of template, expected " + expected);
      }
      if (t.kind == TokenKind::kText) {
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::kText;
        node->pos = t.pos;
        node->text = t.text;
        nodes.push_back(std::move(node));
        advance();
        continue;
      }
      if (t.kind == TokenKind::kVarBegin) {
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::kOutput;
        node->pos = t.pos;
        advance();
        FATHOM_ASSIGN_OR_RETURN(node->expr, parse_tuple(true));
        if (cur().kind != TokenKind::kVarEnd) return syntax_error("expected '}}', found " + describe(cur()));
        advance();
        nodes.push_back(std::move(node));
        continue;
      }
      if (t.kind != TokenKind::kBlockBegin) return syntax_error("unexpected " + describe(t));
      const Token& tag = peek();
      if (tag.kind == TokenKind::kName &&
          std::find(stop_tags.begin(), stop_tags.end(), std::string_view(tag.text)) != stop_tags.end()) {
        *stopped = tag.text;
        advance();
        advance();
        return nodes;
      }
      FATHOM_ASSIGN_OR_RETURN(NodePtr node, parse_statement());
      nodes.push_back(std::move(node));
    }
  }

  Expected<NodePtr> parse_statement() {
    const Nesting nesting(this);
    FATHOM_RETURN_IF_ERROR(nesting.check());
    const SourcePos pos = cur().pos;
    advance();  // {%
    if (cur().kind != TokenKind::kName) return syntax_error("tag name expected, found " + describe(cur()));
    const std::string tag = cur().text;
    const SourcePos tag_pos = cur().pos;
    advance();
    if (tag == "if") return parse_if(pos);
    if (tag == "for") return parse_for(pos);
    if (tag == "set") return parse_set(pos);
    if (tag == "macro") return parse_macro(pos);
    if (tag == "break" || tag == "continue") {
      auto node = std::make_unique<Node>();
      node->kind = tag == "break" ? NodeKind::kBreak : NodeKind::kContinue;
      node->pos = pos;
      FATHOM_RETURN_IF_ERROR(expect_block_end());
      return node;
    }
    for (std::string_view unsupported_tag : kUnsupportedTags) {
      if (tag == unsupported_tag) return unsupported("'{% " + tag + " %}'", tag_pos);
    }
    return error(ErrorCode::kInvalidArgument, "template syntax error at " + format_pos(tag_pos) +
                                                  ": unknown or misplaced tag '" + tag + "'");
  }

  Expected<NodePtr> parse_if(SourcePos pos) {
    auto node = std::make_unique<Node>();
    node->kind = NodeKind::kIf;
    node->pos = pos;
    FATHOM_ASSIGN_OR_RETURN(ExprPtr condition, parse_tuple(true));
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    while (true) {
      std::string stopped;
      FATHOM_ASSIGN_OR_RETURN(NodeList body, parse_nodes({"elif", "else", "endif"}, &stopped));
      node->branches.emplace_back(std::move(condition), std::move(body));
      if (stopped == "endif") break;
      if (stopped == "else") {
        FATHOM_RETURN_IF_ERROR(expect_block_end());
        FATHOM_ASSIGN_OR_RETURN(NodeList else_body, parse_nodes({"endif"}, &stopped));
        node->branches.emplace_back(nullptr, std::move(else_body));
        break;
      }
      FATHOM_ASSIGN_OR_RETURN(condition, parse_tuple(true));
      FATHOM_RETURN_IF_ERROR(expect_block_end());
    }
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    return node;
  }

  // Names (optionally `a, b` or `(a, b)`), and `ns.attr` where allowed.
  Expected<AssignTarget> parse_assign_target(bool allow_attribute) {
    AssignTarget target;
    const bool parenthesized = is_op("(");
    if (parenthesized) advance();
    FATHOM_ASSIGN_OR_RETURN(std::string first, expect_identifier());
    target.names.push_back(first);
    if (allow_attribute && !parenthesized && is_op(".")) {
      advance();
      FATHOM_ASSIGN_OR_RETURN(target.attribute, expect_identifier());
      return target;
    }
    while (is_op(",")) {
      advance();
      target.is_tuple = true;
      if (cur().kind != TokenKind::kName || is_name("in")) break;  // trailing comma
      FATHOM_ASSIGN_OR_RETURN(std::string name, expect_identifier());
      target.names.push_back(name);
    }
    if (parenthesized) FATHOM_RETURN_IF_ERROR(expect_op(")"));
    return target;
  }

  Expected<NodePtr> parse_for(SourcePos pos) {
    auto node = std::make_unique<Node>();
    node->kind = NodeKind::kFor;
    node->pos = pos;
    FATHOM_ASSIGN_OR_RETURN(node->target, parse_assign_target(false));
    FATHOM_RETURN_IF_ERROR(expect_name("in"));
    // The iterable is parsed without inline if-expressions: `if` starts the loop filter.
    FATHOM_ASSIGN_OR_RETURN(node->expr, parse_tuple(false));
    if (is_name("if")) {
      advance();
      FATHOM_ASSIGN_OR_RETURN(node->loop_filter, parse_expression(true));
    }
    if (is_name("recursive")) return unsupported("'recursive' for loop", cur().pos);
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    std::string stopped;
    FATHOM_ASSIGN_OR_RETURN(node->body, parse_nodes({"else", "endfor"}, &stopped));
    if (stopped == "else") {
      FATHOM_RETURN_IF_ERROR(expect_block_end());
      FATHOM_ASSIGN_OR_RETURN(node->else_body, parse_nodes({"endfor"}, &stopped));
    }
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    return node;
  }

  Expected<NodePtr> parse_set(SourcePos pos) {
    auto node = std::make_unique<Node>();
    node->pos = pos;
    FATHOM_ASSIGN_OR_RETURN(node->target, parse_assign_target(true));
    if (is_op("=")) {
      advance();
      node->kind = NodeKind::kSet;
      FATHOM_ASSIGN_OR_RETURN(node->expr, parse_tuple(true));
      FATHOM_RETURN_IF_ERROR(expect_block_end());
      return node;
    }
    if (is_op("|")) return unsupported("filtered '{% set %}' block", cur().pos);
    if (!node->target.attribute.empty() || node->target.is_tuple) {
      return syntax_error("a '{% set %}' block assigns to a single name");
    }
    node->kind = NodeKind::kSetBlock;
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    std::string stopped;
    FATHOM_ASSIGN_OR_RETURN(node->body, parse_nodes({"endset"}, &stopped));
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    return node;
  }

  Expected<NodePtr> parse_macro(SourcePos pos) {
    auto node = std::make_unique<Node>();
    node->kind = NodeKind::kMacro;
    node->pos = pos;
    FATHOM_ASSIGN_OR_RETURN(node->text, expect_identifier());
    FATHOM_RETURN_IF_ERROR(expect_op("("));
    while (!is_op(")")) {
      if (!node->params.empty()) FATHOM_RETURN_IF_ERROR(expect_op(","));
      if (is_op(")")) break;
      MacroParam param;
      FATHOM_ASSIGN_OR_RETURN(param.name, expect_identifier());
      if (is_op("=")) {
        advance();
        FATHOM_ASSIGN_OR_RETURN(param.default_value, parse_expression(true));
      }
      node->params.push_back(std::move(param));
    }
    advance();
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    std::string stopped;
    FATHOM_ASSIGN_OR_RETURN(node->body, parse_nodes({"endmacro"}, &stopped));
    if (cur().kind == TokenKind::kName) advance();  // `{% endmacro name %}`
    FATHOM_RETURN_IF_ERROR(expect_block_end());
    return node;
  }

  // ---- expressions ------------------------------------------------------------------------

  // Expression, or a tuple when commas follow (`{{ a, b }}`, `for x in a, b`).
  Expected<ExprPtr> parse_tuple(bool with_condition) {
    const SourcePos pos = cur().pos;
    FATHOM_ASSIGN_OR_RETURN(ExprPtr first, parse_expression(with_condition));
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::kTuple, pos);
    tuple->operands.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (cur().kind == TokenKind::kVarEnd || cur().kind == TokenKind::kBlockEnd || is_op(")")) break;
      FATHOM_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(with_condition));
      tuple->operands.push_back(std::move(item));
    }
    return sealed(std::move(tuple));
  }

  Expected<ExprPtr> parse_expression(bool with_condition) {
    const Nesting nesting(this);
    FATHOM_RETURN_IF_ERROR(nesting.check());
    if (!with_condition) return parse_or();
    FATHOM_ASSIGN_OR_RETURN(ExprPtr value, parse_or());
    while (is_name("if")) {
      const SourcePos pos = cur().pos;
      advance();
      auto cond = make(ExprKind::kCondition, pos);
      FATHOM_ASSIGN_OR_RETURN(ExprPtr test, parse_or());
      cond->operands.push_back(std::move(test));
      cond->operands.push_back(std::move(value));
      if (is_name("else")) {
        advance();
        FATHOM_ASSIGN_OR_RETURN(ExprPtr otherwise, parse_expression(true));
        cond->operands.push_back(std::move(otherwise));
      } else {
        cond->operands.push_back(nullptr);
      }
      FATHOM_ASSIGN_OR_RETURN(value, sealed(std::move(cond)));
    }
    return value;
  }

  Expected<ExprPtr> parse_or() {
    FATHOM_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
    while (is_name("or")) {
      auto node = make(ExprKind::kOr, cur().pos);
      advance();
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
      node->operands.push_back(std::move(left));
      node->operands.push_back(std::move(right));
      FATHOM_ASSIGN_OR_RETURN(left, sealed(std::move(node)));
    }
    return left;
  }

  Expected<ExprPtr> parse_and() {
    FATHOM_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
    while (is_name("and")) {
      auto node = make(ExprKind::kAnd, cur().pos);
      advance();
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
      node->operands.push_back(std::move(left));
      node->operands.push_back(std::move(right));
      FATHOM_ASSIGN_OR_RETURN(left, sealed(std::move(node)));
    }
    return left;
  }

  // `not not x` loops rather than recursing: only parse_expression and parse_statement recurse
  // per level of nesting, so the depth limit counts what the author sees as nesting.
  Expected<ExprPtr> parse_not() {
    std::vector<SourcePos> nots;
    while (is_name("not")) {
      nots.push_back(cur().pos);
      advance();
    }
    FATHOM_ASSIGN_OR_RETURN(ExprPtr node, parse_compare());
    for (size_t i = nots.size(); i-- > 0;) {
      auto negation = make(ExprKind::kUnary, nots[i]);
      negation->name = "not";
      negation->operands.push_back(std::move(node));
      FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(negation)));
    }
    return node;
  }

  Expected<ExprPtr> parse_compare() {
    const SourcePos pos = cur().pos;
    FATHOM_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
    ExprPtr node;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::kOperator &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!node) {
        node = make(ExprKind::kCompare, pos);
        node->operands.push_back(std::move(first));
      }
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_math1());
      node->operands.push_back(std::move(right));
      node->compare_ops.push_back(op);
    }
    return node ? sealed(std::move(node)) : std::move(first);
  }

  Expected<ExprPtr> binary(ExprPtr left, ExprPtr right, std::string op, SourcePos pos) {
    auto node = make(ExprKind::kBinary, pos);
    node->name = std::move(op);
    node->operands.push_back(std::move(left));
    node->operands.push_back(std::move(right));
    return sealed(std::move(node));
  }

  Expected<ExprPtr> parse_math1() {
    FATHOM_ASSIGN_OR_RETURN(ExprPtr left, parse_concat());
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().text;
      const SourcePos pos = cur().pos;
      advance();
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_concat());
      FATHOM_ASSIGN_OR_RETURN(left, binary(std::move(left), std::move(right), op, pos));
    }
    return left;
  }

  Expected<ExprPtr> parse_concat() {
    FATHOM_ASSIGN_OR_RETURN(ExprPtr left, parse_math2());
    while (is_op("~")) {
      const SourcePos pos = cur().pos;
      advance();
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_math2());
      FATHOM_ASSIGN_OR_RETURN(left, binary(std::move(left), std::move(right), "~", pos));
    }
    return left;
  }

  Expected<ExprPtr> parse_math2() {
    FATHOM_ASSIGN_OR_RETURN(ExprPtr left, parse_pow());
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().text;
      const SourcePos pos = cur().pos;
      advance();
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_pow());
      FATHOM_ASSIGN_OR_RETURN(left, binary(std::move(left), std::move(right), op, pos));
    }
    return left;
  }

  // jinja2's ** is left-associative (2 ** 3 ** 2 == 64), unlike python's.
  Expected<ExprPtr> parse_pow() {
    FATHOM_ASSIGN_OR_RETURN(ExprPtr left, parse_unary());
    while (is_op("**")) {
      const SourcePos pos = cur().pos;
      advance();
      FATHOM_ASSIGN_OR_RETURN(ExprPtr right, parse_unary());
      FATHOM_ASSIGN_OR_RETURN(left, binary(std::move(left), std::move(right), "**", pos));
    }
    return left;
  }

  // Prefix signs bind to the operand with its postfix chain (`-a.b` is `-(a.b)`); filters then
  // apply to the signed value (`-a|abs` is `(-a)|abs`), as in jinja2.
  Expected<ExprPtr> parse_unary() {
    std::vector<std::pair<std::string, SourcePos>> signs;
    while (is_op("-") || is_op("+")) {
      signs.emplace_back(cur().text, cur().pos);
      advance();
    }
    FATHOM_ASSIGN_OR_RETURN(ExprPtr node, parse_primary());
    FATHOM_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
    for (size_t i = signs.size(); i-- > 0;) {
      auto sign = make(ExprKind::kUnary, signs[i].second);
      sign->name = signs[i].first;
      sign->operands.push_back(std::move(node));
      FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(sign)));
    }
    return parse_filters_and_tests(std::move(node));
  }

  Expected<ExprPtr> parse_primary() {
    const Token& t = cur();
    switch (t.kind) {
      case TokenKind::kName: {
        auto node = make(ExprKind::kLiteral, t.pos);
        if (t.text == "true" || t.text == "True") {
          node->literal = Value(true);
        } else if (t.text == "false" || t.text == "False") {
          node->literal = Value(false);
        } else if (t.text == "none" || t.text == "None") {
          node->literal = Value::none();
        } else {
          node->kind = ExprKind::kName;
          node->name = t.text;
        }
        advance();
        return node;
      }
      case TokenKind::kString: {
        // Adjacent literals concatenate: 'a' "b" == 'ab'.
        auto node = make(ExprKind::kLiteral, t.pos);
        std::string text;
        while (cur().kind == TokenKind::kString) {
          text += cur().text;
          advance();
        }
        node->literal = Value(std::move(text));
        return node;
      }
      case TokenKind::kInteger: {
        auto node = make(ExprKind::kLiteral, t.pos);
        node->literal = Value(t.int_value);
        advance();
        return node;
      }
      case TokenKind::kFloat: {
        auto node = make(ExprKind::kLiteral, t.pos);
        node->literal = Value(t.float_value);
        advance();
        return node;
      }
      case TokenKind::kOperator:
        if (t.text == "(") return parse_parenthesized();
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    return syntax_error("unexpected " + describe(t) + " in expression");
  }

  Expected<ExprPtr> parse_parenthesized() {
    const SourcePos pos = cur().pos;
    advance();
    if (is_op(")")) {
      advance();
      return make(ExprKind::kTuple, pos);
    }
    FATHOM_ASSIGN_OR_RETURN(ExprPtr first, parse_expression(true));
    if (is_op(")")) {
      advance();
      return first;
    }
    auto tuple = make(ExprKind::kTuple, pos);
    tuple->operands.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (is_op(")")) break;
      FATHOM_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(true));
      tuple->operands.push_back(std::move(item));
    }
    FATHOM_RETURN_IF_ERROR(expect_op(")"));
    return sealed(std::move(tuple));
  }

  Expected<ExprPtr> parse_list() {
    auto list = make(ExprKind::kList, cur().pos);
    advance();
    while (!is_op("]")) {
      if (!list->operands.empty()) FATHOM_RETURN_IF_ERROR(expect_op(","));
      if (is_op("]")) break;
      FATHOM_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(true));
      list->operands.push_back(std::move(item));
    }
    advance();
    return sealed(std::move(list));
  }

  Expected<ExprPtr> parse_dict() {
    auto dict = make(ExprKind::kDict, cur().pos);
    advance();
    while (!is_op("}")) {
      if (!dict->operands.empty()) FATHOM_RETURN_IF_ERROR(expect_op(","));
      if (is_op("}")) break;
      FATHOM_ASSIGN_OR_RETURN(ExprPtr key, parse_expression(true));
      FATHOM_RETURN_IF_ERROR(expect_op(":"));
      FATHOM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
      dict->operands.push_back(std::move(key));
      dict->operands.push_back(std::move(value));
    }
    advance();
    return sealed(std::move(dict));
  }

  Expected<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        const SourcePos pos = cur().pos;
        advance();
        if (cur().kind == TokenKind::kName) {
          auto attr = make(ExprKind::kGetAttr, pos);
          attr->name = cur().text;
          attr->operands.push_back(std::move(node));
          FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(attr)));
          advance();
        } else if (cur().kind == TokenKind::kInteger) {
          auto item = make(ExprKind::kGetItem, pos);
          item->operands.push_back(std::move(node));
          auto index = make(ExprKind::kLiteral, cur().pos);
          index->literal = Value(cur().int_value);
          item->operands.push_back(std::move(index));
          FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(item)));
          advance();
        } else {
          return syntax_error("expected attribute name after '.', found " + describe(cur()));
        }
      } else if (is_op("[")) {
        FATHOM_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node)));
      } else if (is_op("(")) {
        auto call = make(ExprKind::kCall, cur().pos);
        call->operands.push_back(std::move(node));
        FATHOM_RETURN_IF_ERROR(parse_call_args(*call));
        FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(call)));
      } else {
        return node;
      }
    }
  }

  Expected<ExprPtr> parse_subscript(ExprPtr target) {
    const SourcePos pos = cur().pos;
    advance();  // [
    ExprPtr parts[3];
    bool is_slice = false;
    for (int part = 0; part < 3; ++part) {
      if (!is_op(":") && !is_op("]")) {
        FATHOM_ASSIGN_OR_RETURN(parts[part], parse_expression(true));
      }
      if (is_op(":") && part < 2) {
        is_slice = true;
        advance();
        continue;
      }
      break;
    }
    FATHOM_RETURN_IF_ERROR(expect_op("]"));
    auto node = make(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, pos);
    node->operands.push_back(std::move(target));
    if (!is_slice && !parts[0]) return syntax_error("expected an index inside '[]'");
    node->operands.push_back(std::move(parts[0]));
    if (is_slice) {
      node->operands.push_back(std::move(parts[1]));
      node->operands.push_back(std::move(parts[2]));
    }
    return sealed(std::move(node));
  }

  // `(a, b, key=c)`; appends positional arguments to call.operands and keywords to call.keywords.
  Status parse_call_args(Expr& call) {
    FATHOM_RETURN_IF_ERROR(expect_op("("));
    bool first = true;
    while (!is_op(")")) {
      if (!first) FATHOM_RETURN_IF_ERROR(expect_op(","));
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) return unsupported("'*args' / '**kwargs' call arguments", cur().pos);
      if (cur().kind == TokenKind::kName && peek().kind == TokenKind::kOperator && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        FATHOM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
        call.keywords.emplace_back(std::move(key), std::move(value));
      } else {
        if (!call.keywords.empty()) return syntax_error("positional argument follows keyword argument");
        FATHOM_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
        call.operands.push_back(std::move(value));
      }
    }
    advance();
    return Status::ok();
  }

  Expected<ExprPtr> parse_filters_and_tests(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        advance();
        auto filter = make(ExprKind::kFilter, cur().pos);
        FATHOM_ASSIGN_OR_RETURN(filter->name, expect_identifier());
        while (is_op(".")) {  // dotted filter names
          advance();
          FATHOM_ASSIGN_OR_RETURN(std::string part, expect_identifier());
          filter->name += "." + part;
        }
        filter->operands.push_back(std::move(node));
        if (is_op("(")) FATHOM_RETURN_IF_ERROR(parse_call_args(*filter));
        FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(filter)));
      } else if (is_name("is")) {
        advance();
        auto test = make(ExprKind::kTest, cur().pos);
        if (is_name("not")) {
          test->negated = true;
          advance();
        }
        FATHOM_ASSIGN_OR_RETURN(test->name, expect_identifier());
        test->operands.push_back(std::move(node));
        const Token& t = cur();
        if (is_op("(")) {
          FATHOM_RETURN_IF_ERROR(parse_call_args(*test));
        } else if ((t.kind == TokenKind::kName && t.text != "else" && t.text != "or" && t.text != "and") ||
                   t.kind == TokenKind::kString || t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat ||
                   is_op("[") || is_op("{")) {
          // A single argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
          if (is_name("is")) return syntax_error("you cannot chain multiple tests with 'is'");
          FATHOM_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
          FATHOM_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
          test->operands.push_back(std::move(arg));
        }
        FATHOM_ASSIGN_OR_RETURN(node, sealed(std::move(test)));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> tokens_;  // the whole template, ending with kEnd
  size_t index_ = 0;           // current token
  int depth_ = 0;              // recursion levels now open (see Nesting)
};

}  // namespace

Expected<std::unique_ptr<Template>> parse_template(std::string_view source, const LexOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::vector<Token> tokens, tokenize(source, options));
  Parser parser(std::move(tokens));
  return parser.run();
}

}  // namespace fathom::jinja
