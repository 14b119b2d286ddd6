#include "common/json.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_set>

#include <fmt/format.h>

namespace plx::json {

// ---------------------------------------------------------------------------------------
// UTF-8

namespace {

// Length of the well-formed UTF-8 sequence at s[pos] (Unicode 15, table 3-7), or 0 when
// the bytes there are not one: overlong forms, surrogates and > U+10FFFF are rejected.
std::size_t utf8_sequence_length(std::string_view s, std::size_t pos) {
  auto byte = [&](std::size_t i) -> unsigned {
    return pos + i < s.size() ? static_cast<unsigned char>(s[pos + i]) : 0x100u;
  };
  auto in = [](unsigned b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; };
  unsigned b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (in(b0, 0xC2, 0xDF)) return in(byte(1), 0x80, 0xBF) ? 2 : 0;
  if (in(b0, 0xE0, 0xEF)) {
    unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(b0, 0xF0, 0xF4)) {
    unsigned lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (std::size_t pos = 0; pos < s.size();) {
    std::size_t n = utf8_sequence_length(s, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Value

namespace {
[[noreturn]] void type_error(const char* wanted, Type got) {
  static constexpr const char* kNames[] = {"null", "bool", "number", "string", "array",
                                           "object"};
  throw TypeError(fmt::format("json: expected {}, found {}", wanted,
                              kNames[static_cast<int>(got)]));
}
}  // namespace

bool Value::is_int() const {
  const auto* n = std::get_if<Number>(&data_);
  return n != nullptr && n->exact;
}

bool Value::as_bool() const {
  if (!is_bool()) type_error("bool", type());
  return std::get<bool>(data_);
}

double Value::as_double() const {
  if (!is_number()) type_error("number", type());
  return std::get<Number>(data_).d;
}

std::int64_t Value::as_int() const {
  if (!is_number()) type_error("integer", type());
  const Number& n = std::get<Number>(data_);
  if (n.exact) return n.i;
  // 2^63 is exactly representable; the range check keeps the cast defined.
  if (std::trunc(n.d) == n.d && n.d >= -9223372036854775808.0 && n.d < 9223372036854775808.0)
    return static_cast<std::int64_t>(n.d);
  throw TypeError(fmt::format("json: number {} is not an int64", n.d));
}

const std::string& Value::as_string() const {
  if (!is_string()) type_error("string", type());
  return std::get<std::string>(data_);
}

const Array& Value::as_array() const {
  if (!is_array()) type_error("array", type());
  return std::get<Array>(data_);
}

Array& Value::as_array() {
  if (!is_array()) type_error("array", type());
  return std::get<Array>(data_);
}

const Object& Value::as_object() const {
  if (!is_object()) type_error("object", type());
  return std::get<Object>(data_);
}

Object& Value::as_object() {
  if (!is_object()) type_error("object", type());
  return std::get<Object>(data_);
}

const Value* Value::find(std::string_view key) const {
  const auto* obj = std::get_if<Object>(&data_);
  if (obj == nullptr) return nullptr;
  for (const auto& [k, v] : *obj)
    if (k == key) return &v;
  return nullptr;
}

const Value& Value::at(std::string_view key) const {
  if (!is_object()) type_error("object", type());
  if (const Value* v = find(key)) return *v;
  throw TypeError(fmt::format("json: missing key {}", quote(key)));
}

Value& Value::operator[](std::string_view key) {
  if (is_null()) data_ = Object{};
  Object& obj = as_object();
  for (auto& [k, v] : obj)
    if (k == key) return v;
  obj.emplace_back(std::string(key), Value());
  return obj.back().second;
}

Value& Value::set(std::string_view key, Value v) {
  Value& slot = (*this)[key];
  slot = std::move(v);
  return slot;
}

void Value::push_back(Value v) {
  if (is_null()) data_ = Array{};
  as_array().push_back(std::move(v));
}

std::size_t Value::size() const {
  if (const auto* a = std::get_if<Array>(&data_)) return a->size();
  if (const auto* o = std::get_if<Object>(&data_)) return o->size();
  return 0;
}

bool Value::operator==(const Value& other) const {
  if (type() != other.type()) return false;
  if (is_number()) {
    const Number& a = std::get<Number>(data_);
    const Number& b = std::get<Number>(other.data_);
    return a.exact && b.exact ? a.i == b.i : a.d == b.d;
  }
  return data_ == other.data_;
}

// ---------------------------------------------------------------------------------------
// Writer

namespace {

void write_escaped(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t pos = 0; pos < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[pos]);
    if (c >= 0x80) {
      std::size_t n = utf8_sequence_length(s, pos);
      // Not UTF-8: JSON text cannot carry the raw byte, so write U+FFFD instead.
      out += n == 0 ? std::string_view("\xEF\xBF\xBD") : s.substr(pos, n);
      pos += n == 0 ? 1 : n;
      continue;
    }
    ++pos;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  out += '"';
}

// Shortest text that reads back as the same double; a ".0" keeps an integral double a
// double after a round trip (so is_int() survives dump + parse).
void write_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  std::string text = fmt::format("{}", d);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  out += text;
}

class Writer {
 public:
  explicit Writer(int indent) : indent_(indent) {}

  void write(std::string& out, const Value& v, int level) const {
    switch (v.type()) {
      case Type::null: out += "null"; break;
      case Type::boolean: out += v.as_bool() ? "true" : "false"; break;
      case Type::number:
        if (v.is_int()) out += fmt::format("{}", v.as_int());
        else write_double(out, v.as_double());
        break;
      case Type::string: write_escaped(out, v.as_string()); break;
      case Type::array: write_array(out, v.as_array(), level); break;
      case Type::object: write_object(out, v.as_object(), level); break;
    }
  }

 private:
  void newline(std::string& out, int level) const {
    if (indent_ < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent_) * level, ' ');
  }

  void write_array(std::string& out, const Array& a, int level) const {
    out += '[';
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (i > 0) out += ',';
      newline(out, level + 1);
      write(out, a[i], level + 1);
    }
    if (!a.empty()) newline(out, level);
    out += ']';
  }

  void write_object(std::string& out, const Object& o, int level) const {
    out += '{';
    for (std::size_t i = 0; i < o.size(); ++i) {
      if (i > 0) out += ',';
      newline(out, level + 1);
      write_escaped(out, o[i].first);
      out += indent_ < 0 ? ":" : ": ";
      write(out, o[i].second, level + 1);
    }
    if (!o.empty()) newline(out, level);
    out += '}';
  }

  int indent_;
};

}  // namespace

std::string quote(std::string_view s) {
  std::string out;
  write_escaped(out, s);
  return out;
}

std::string Value::dump(int indent) const {
  std::string out;
  Writer(indent).write(out, *this, 0);
  return out;
}

// ---------------------------------------------------------------------------------------
// Parser: recursive descent over the RFC 8259 grammar, one byte at a time, with the
// nesting depth bounded so hostile input cannot overflow the stack.

class Parser {
 public:
  Parser(std::string_view text, const ParseOptions& options) : s_(text), opt_(options) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("trailing characters after the JSON value");
    return v;
  }

 private:
  // Names what sits at the current offset, for messages: 'x', byte 0x01, end of input.
  std::string found() const {
    if (pos_ >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x21 && c < 0x7F) return fmt::format("'{}'", static_cast<char>(c));
    return fmt::format("byte 0x{:02x}", c);
  }

  [[noreturn]] void fail_at(std::size_t offset, std::string_view problem) const {
    std::size_t line = 1, line_start = 0;
    for (std::size_t i = 0; i < offset && i < s_.size(); ++i)
      if (s_[i] == '\n') ++line, line_start = i + 1;
    throw ParseError(fmt::format("json: {} at offset {} (line {}, column {})", problem, offset,
                                 line, offset - line_start + 1),
                     offset);
  }
  [[noreturn]] void fail(std::string_view problem) const { fail_at(pos_, problem); }
  [[noreturn]] void fail_found(std::string_view expected) const {
    fail(fmt::format("expected {}, found {}", expected, found()));
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  bool is_digit() const { return !at_end() && s_[pos_] >= '0' && s_[pos_] <= '9'; }

  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                         s_[pos_] == '\r'))
      ++pos_;
  }

  void expect(char c, std::string_view what) {
    if (at_end() || s_[pos_] != c) fail_found(what);
    ++pos_;
  }

  Value parse_value(int depth) {
    switch (peek()) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Value(parse_string());
      case 't': parse_word("true"); return Value(true);
      case 'f': parse_word("false"); return Value(false);
      case 'n': parse_word("null"); return Value();
      default:
        if (peek() == '-' || is_digit()) return parse_number();
        fail_found("a JSON value");
    }
  }

  void parse_word(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail_found(fmt::format("'{}'", word));
    pos_ += word.size();
  }

  void enter(int depth) const {
    if (depth > opt_.max_depth)
      fail(fmt::format("nesting deeper than {} levels", opt_.max_depth));
  }

  Value parse_array(int depth) {
    enter(depth);
    ++pos_;  // '['
    Array items;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return Value(std::move(items));
    }
    for (;;) {
      skip_ws();
      items.push_back(parse_value(depth));
      skip_ws();
      if (peek() == ']') break;
      expect(',', "',' or ']' in array");
    }
    ++pos_;
    return Value(std::move(items));
  }

  Value parse_object(int depth) {
    enter(depth);
    ++pos_;  // '{'
    Object members;
    std::unordered_set<std::string> seen;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return Value(std::move(members));
    }
    for (;;) {
      skip_ws();
      std::size_t key_offset = pos_;
      if (peek() != '"') fail_found("a string key in object");
      std::string key = parse_string();
      if (!seen.insert(key).second) fail_at(key_offset, "duplicate key " + quote(key));
      skip_ws();
      expect(':', "':' after object key");
      skip_ws();
      members.emplace_back(std::move(key), parse_value(depth));
      skip_ws();
      if (peek() == '}') break;
      expect(',', "',' or '}' in object");
    }
    ++pos_;
    return Value(std::move(members));
  }

  std::string parse_string() {
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') break;
      if (c == '\\') {
        parse_escape(out);
      } else if (c < 0x20) {
        fail(fmt::format("control character 0x{:02x} in string (must be escaped)", c));
      } else if (c < 0x80) {
        out += static_cast<char>(c);
        ++pos_;
      } else {
        std::size_t n = utf8_sequence_length(s_, pos_);
        if (n == 0) fail("invalid UTF-8 in string");
        out.append(s_.substr(pos_, n));
        pos_ += n;
      }
    }
    ++pos_;
    return out;
  }

  void parse_escape(std::string& out) {
    std::size_t start = pos_++;  // the backslash
    char c = peek();
    static constexpr std::string_view kFrom = "\"\\/bfnrt", kTo = "\"\\/\b\f\n\r\t";
    if (auto i = kFrom.find(c); c != '\0' && i != std::string_view::npos) {
      out += kTo[i];
      ++pos_;
      return;
    }
    if (c != 'u') fail_at(start, "invalid escape sequence in string");
    ++pos_;
    std::uint32_t cp = parse_hex4(start);
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(start, "unpaired low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (s_.substr(pos_, 2) != "\\u") fail_at(start, "unpaired high surrogate in \\u escape");
      pos_ += 2;
      std::uint32_t lo = parse_hex4(start);
      if (lo < 0xDC00 || lo > 0xDFFF) fail_at(start, "unpaired high surrogate in \\u escape");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(out, cp);
  }

  std::uint32_t parse_hex4(std::size_t escape_start) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      char c = peek();
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) fail_at(escape_start, "\\u escape needs 4 hex digits");
      v = v * 16 + static_cast<std::uint32_t>(d);
    }
    return v;
  }

  void skip_digits() {
    while (is_digit()) ++pos_;
  }

  Value parse_number() {
    std::size_t start = pos_;
    bool integral = true;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (is_digit()) fail("leading zero in number");
    } else {
      if (!is_digit()) fail_found("a digit");
      skip_digits();
    }
    if (peek() == '.') {
      ++pos_, integral = false;
      if (!is_digit()) fail_found("a digit after '.'");
      skip_digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_, integral = false;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit()) fail_found("a digit in exponent");
      skip_digits();
    }
    return make(s_.substr(start, pos_ - start), integral, start);
  }

  Value make(std::string_view text, bool integral, std::size_t start) const {
    Value v;
    Value::Number n{0.0, 0, false};
    const char* end = text.data() + text.size();
    if (integral && text != "-0") {
      auto r = std::from_chars(text.data(), end, n.i);
      n.exact = r.ec == std::errc() && r.ptr == end;
    }
    auto r = std::from_chars(text.data(), end, n.d);
    if (r.ec == std::errc::result_out_of_range) {
      // Below the smallest denormal reads as zero; above DBL_MAX is an error.
      if (!underflows(text)) fail_at(start, "number out of range of a double");
      n.d = text[0] == '-' ? -0.0 : 0.0;
    } else if (r.ec != std::errc() || r.ptr != end) {
      fail_at(start, "malformed number");
    }
    v.data_ = n;
    return v;
  }

  // Decimal magnitude of a grammar-checked number literal below zero (value < 1)?
  static bool underflows(std::string_view text) {
    std::size_t i = text[0] == '-' ? 1 : 0;
    bool seen_nonzero = false, frac = false;
    long long int_digits = 0, frac_zeros = 0;
    for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
      if (text[i] == '.') {
        frac = true;
        continue;
      }
      seen_nonzero = seen_nonzero || text[i] != '0';
      if (!frac && seen_nonzero) ++int_digits;
      if (frac && !seen_nonzero) ++frac_zeros;
    }
    // Power of ten of the leading digit, then the exponent (saturated: it only has to
    // decide the sign).
    long long mag = int_digits > 0 ? int_digits - 1 : -(frac_zeros + 1);
    long long exp = 0;
    bool neg = false;
    if (i < text.size()) {
      ++i;
      if (text[i] == '+' || text[i] == '-') neg = text[i++] == '-';
      for (; i < text.size(); ++i) exp = std::min(exp * 10 + (text[i] - '0'), 1'000'000'000LL);
    }
    return mag + (neg ? -exp : exp) < 0;
  }

  std::string_view s_;
  const ParseOptions& opt_;
  std::size_t pos_ = 0;
};

Value parse(std::string_view text, const ParseOptions& options) {
  return Parser(text, options).parse_document();
}

}  // namespace plx::json
