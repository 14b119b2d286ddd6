// A small JSON value, a strict parser and a deterministic writer (RFC 8259), for the
// cache manifests and the tuning database. Written in-tree: the product has no JSON
// dependency, and we want exactly these guarantees:
//  * the parser never crashes on hostile input: nesting is limited (no stack overflow),
//    every byte is checked, trailing garbage and duplicate keys are errors, strings must be
//    UTF-8 and \u escapes must pair their surrogates; errors are ONE line with the offset;
//  * the writer is deterministic (objects keep insertion order, numbers print the same
//    way every time), so equal values give equal bytes and files diff cleanly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "parallax/errors.hpp"

namespace plx::json {

// Malformed JSON text. what(): "json: <problem> at offset N (line L, column C)".
struct ParseError : plx::Error {
  ParseError(const std::string& msg, std::size_t offset_) : plx::Error(msg), offset(offset_) {}
  std::size_t offset;  // byte offset of the problem in the input
};

// A value used as the wrong type (as_string() on a number, at() of a missing key, ...).
struct TypeError : plx::Error {
  using plx::Error::Error;
};

class Value;
using Array = std::vector<Value>;
// Members in insertion order; keys are unique (the parser rejects duplicates and
// operator[] / set() overwrite in place).
using Object = std::vector<std::pair<std::string, Value>>;

enum class Type { null, boolean, number, string, array, object };

class Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : data_(b) {}
  Value(double d) : data_(Number{d, 0, false}) {}
  template <typename T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool>)
  Value(T i) : data_(make_int(i)) {}
  Value(std::string s) : data_(std::move(s)) {}
  Value(std::string_view s) : data_(std::string(s)) {}
  Value(const char* s) : data_(std::string(s)) {}
  Value(Array a) : data_(std::move(a)) {}
  Value(Object o) : data_(std::move(o)) {}

  static Value array() { return Value(Array{}); }
  static Value object() { return Value(Object{}); }

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::null; }
  bool is_bool() const { return type() == Type::boolean; }
  bool is_number() const { return type() == Type::number; }
  bool is_string() const { return type() == Type::string; }
  bool is_array() const { return type() == Type::array; }
  bool is_object() const { return type() == Type::object; }
  // A number whose value is an exact int64 (written without fraction or exponent in the
  // text it was parsed from, or constructed from an integer).
  bool is_int() const;

  // Typed access; TypeError when the value has another type.
  bool as_bool() const;
  double as_double() const;
  std::int64_t as_int() const;  // also accepts a double holding an integral value in range
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  // Object access. find() returns nullptr when absent or when this is not an object.
  const Value* find(std::string_view key) const;
  const Value& at(std::string_view key) const;  // TypeError when absent
  // Inserts a null member when absent (a null value becomes an empty object first).
  Value& operator[](std::string_view key);
  Value& set(std::string_view key, Value v);
  // Array append (a null value becomes an empty array first).
  void push_back(Value v);
  std::size_t size() const;  // members of an object, elements of an array, else 0

  // indent < 0: compact, one line. indent >= 0: pretty, that many spaces per level.
  // No trailing newline. Non-finite doubles are written as null (JSON has no NaN/Inf);
  // bytes that are not valid UTF-8 are written as U+FFFD, so the output always parses.
  std::string dump(int indent = -1) const;

  // Structural equality: objects compare member by member in order; numbers by int64
  // when both are exact integers, else by double value.
  bool operator==(const Value& other) const;

 private:
  struct Number {
    double d;
    std::int64_t i;
    bool exact;  // i holds the value exactly
    bool operator==(const Number&) const = default;  // unused: Value::operator== decides
  };
  template <typename T>
  static Number make_int(T v) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (v > static_cast<T>(std::numeric_limits<std::int64_t>::max()))
        return Number{static_cast<double>(v), 0, false};
    }
    return Number{static_cast<double>(v), static_cast<std::int64_t>(v), true};
  }
  friend class Parser;

  std::variant<std::nullptr_t, bool, Number, std::string, Array, Object> data_;
};

struct ParseOptions {
  // Arrays and objects nested deeper than this are an error, not a stack overflow.
  int max_depth = 256;
};

// Parses exactly one JSON text (surrounding whitespace allowed); throws ParseError.
Value parse(std::string_view text, const ParseOptions& options = {});

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// `s` as a quoted JSON string literal (the writer's escaping).
std::string quote(std::string_view s);

}  // namespace plx::json
