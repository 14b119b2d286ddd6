// common/json: values, strict parser, deterministic writer, hostile input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include <fmt/format.h>

#include "common/json.hpp"

using plx::json::Array;
using plx::json::Object;
using plx::json::ParseError;
using plx::json::TypeError;
using plx::json::Value;
using plx::json::parse;

namespace {

// Parses, expecting failure; returns the message.
std::string parse_error(const std::string& text, std::size_t* offset = nullptr) {
  try {
    parse(text);
  } catch (const ParseError& e) {
    if (offset != nullptr) *offset = e.offset;
    return e.what();
  }
  FAIL("parsed but should not have: " << text);
  return {};
}

// Any input either parses (and then round-trips exactly) or throws ParseError. Anything
// else (a crash, another exception) fails the test.
void parse_never_crashes(const std::string& text) {
  Value v;
  try {
    v = parse(text);
  } catch (const ParseError& e) {
    REQUIRE(std::string(e.what()).find('\n') == std::string::npos);
    return;
  }
  REQUIRE(parse(v.dump()) == v);
  REQUIRE(parse(v.dump(2)) == v);
}

Value random_value(std::mt19937& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth > 4 ? 5 : 7);
  auto rnd = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto rnd_string = [&] {
    static const std::string alphabet[] = {"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t",
                                           std::string(1, '\x01'), "\x7f", "\xc3\xa9",
                                           "\xe2\x82\xac", "\xf0\x9f\x98\x80", "{", "]"};
    std::string s;
    for (int i = rnd(0, 12); i > 0; --i) s += alphabet[rnd(0, 15)];
    return s;
  };
  switch (kind(rng)) {
    case 0: return Value();
    case 1: return Value(rnd(0, 1) == 1);
    case 2: return Value(static_cast<std::int64_t>(rng()) * (rnd(0, 1) ? 1 : -1) * 977);
    case 3: return Value(std::ldexp(static_cast<double>(rng()) - 2e9, rnd(-60, 60)));
    case 4:
    case 5: return Value(rnd_string());
    case 6: {
      Array a;
      for (int i = rnd(0, 5); i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return Value(std::move(a));
    }
    default: {
      Value o = Value::object();
      for (int i = rnd(0, 5); i > 0; --i) o.set(rnd_string(), random_value(rng, depth + 1));
      return o;
    }
  }
}

}  // namespace

TEST_CASE("json: scalars parse to the right types", "[json]") {
  CHECK(parse("null").is_null());
  CHECK(parse("true").as_bool());
  CHECK_FALSE(parse(" false ").as_bool());
  CHECK(parse("0").as_int() == 0);
  CHECK(parse("-17").as_int() == -17);
  CHECK(parse("9223372036854775807").as_int() == std::numeric_limits<std::int64_t>::max());
  CHECK(parse("-9223372036854775808").as_int() == std::numeric_limits<std::int64_t>::min());
  CHECK(parse("1.5").as_double() == 1.5);
  CHECK(parse("-2.5e-3").as_double() == -0.0025);
  CHECK(parse("1E+2").as_double() == 100.0);
  CHECK(parse("\"hi\"").as_string() == "hi");
  CHECK(parse("[]").as_array().empty());
  CHECK(parse("{}").as_object().empty());
}

TEST_CASE("json: integers stay exact, doubles stay doubles", "[json]") {
  CHECK(parse("42").is_int());
  CHECK_FALSE(parse("42.0").is_int());
  CHECK_FALSE(parse("4e1").is_int());
  CHECK_FALSE(parse("-0").is_int());                   // int64 has no negative zero
  CHECK(std::signbit(parse("-0").as_double()));
  CHECK_FALSE(parse("9223372036854775808").is_int());  // 2^63: only a double
  CHECK(parse("9223372036854775808").as_double() == 9223372036854775808.0);
  CHECK(parse("12345678901234567").as_int() == 12345678901234567);  // beyond 2^53, exact
  CHECK(parse("1e-400").as_double() == 0.0);                       // underflow reads as zero
  CHECK(parse("3.0").as_int() == 3);                                 // integral double
  CHECK_THROWS_AS(parse("1.5").as_int(), TypeError);
  CHECK_THROWS_AS(parse("1e300").as_int(), TypeError);
  // dump keeps the distinction through a round trip
  CHECK(Value(3.0).dump() == "3.0");
  CHECK(Value(3).dump() == "3");
  CHECK(Value(-0.0).dump() == "-0.0");
  CHECK(Value(0.1).dump() == "0.1");
  CHECK(Value(1e300).dump() == "1e+300");
  CHECK_FALSE(parse(Value(3.0).dump()).is_int());
  CHECK(Value(std::numeric_limits<std::uint64_t>::max()).dump() == "1.8446744073709552e+19");
}

TEST_CASE("json: compact and pretty output are exact and deterministic", "[json]") {
  Value v = Value::object();
  v.set("name", "plx");
  v.set("zeta", 1);
  v.set("alpha", Array{Value(true), Value(), Value(2.5), Value("x")});
  v["nested"]["empty_a"] = Value::array();
  v["nested"]["empty_o"] = Value::object();
  CHECK(v.dump() ==
        R"({"name":"plx","zeta":1,"alpha":[true,null,2.5,"x"],"nested":{"empty_a":[],"empty_o":{}}})");
  CHECK(v.dump(2) == R"({
  "name": "plx",
  "zeta": 1,
  "alpha": [
    true,
    null,
    2.5,
    "x"
  ],
  "nested": {
    "empty_a": [],
    "empty_o": {}
  }
})");
  CHECK(parse(v.dump(2)) == v);
  CHECK(parse(v.dump()).dump() == v.dump());
  // insertion order, not sorted; set() overwrites in place
  v.set("name", "again");
  CHECK(v.as_object().front().first == "name");
  CHECK(v.at("name").as_string() == "again");
}

TEST_CASE("json: object access", "[json]") {
  Value v = parse(R"({"a": 1, "b": {"c": [1, 2, 3]}})");
  CHECK(v.find("a")->as_int() == 1);
  CHECK(v.find("missing") == nullptr);
  CHECK(v.at("b").at("c").size() == 3);
  CHECK_THROWS_AS(v.at("missing"), TypeError);
  CHECK_THROWS_AS(v.at("a").as_string(), TypeError);
  CHECK_THROWS_AS(v.at("a").at("x"), TypeError);
  CHECK(Value(5).find("x") == nullptr);
  Value built;
  built.push_back(1);
  built.push_back("two");
  CHECK(built.dump() == R"([1,"two"])");
}

TEST_CASE("json: string escapes both ways", "[json]") {
  CHECK(parse(R"("\"\\\/\b\f\n\r\t")").as_string() == "\"\\/\b\f\n\r\t");
  CHECK(parse(R"("\u00e9\u20AC")").as_string() == "\xc3\xa9\xe2\x82\xac");
  CHECK(parse(R"("\ud83d\ude00")").as_string() == "\xf0\x9f\x98\x80");  // surrogate pair
  CHECK(parse(R"("\u0000")").as_string() == std::string(1, '\0'));
  CHECK(parse("\"\xf0\x9f\x98\x80 raw\"").as_string() == "\xf0\x9f\x98\x80 raw");
  CHECK(Value(std::string("a\"b\\c\n\x01\x1f\x7f")).dump() == R"("a\"b\\c\n\u0001\u001f)" "\x7f\"");
  CHECK(Value("\xc3\xa9").dump() == "\"\xc3\xa9\"");  // UTF-8 written as is
  CHECK(Value(std::string("\0x", 2)).dump() == R"("\u0000x")");
  // bytes that are not UTF-8 become U+FFFD, so the output always parses
  std::string out = Value("a\xff" "b").dump();
  CHECK(out == "\"a\xef\xbf\xbd" "b\"");
  CHECK(parse(out).as_string() == "a\xef\xbf\xbd" "b");
  // non-finite numbers have no JSON spelling
  CHECK(Value(std::nan("")).dump() == "null");
  CHECK(Value(std::numeric_limits<double>::infinity()).dump() == "null");
}

TEST_CASE("json: errors are one line with the offset", "[json]") {
  struct Case {
    std::string text;
    std::size_t offset;
    std::string fragment;
  };
  const Case cases[] = {
      {"", 0, "expected a JSON value, found end of input"},
      {"   ", 3, "end of input"},
      {"[1,]", 3, "expected a JSON value, found ']'"},
      {"[1 2]", 3, "expected ',' or ']' in array, found '2'"},
      {"{\"a\":1,}", 7, "expected a string key in object, found '}'"},
      {"{\"a\" 1}", 5, "expected ':' after object key"},
      {"{a:1}", 1, "expected a string key"},
      {"[1] x", 4, "trailing characters after the JSON value"},
      {"{} {}", 3, "trailing characters"},
      {"01", 1, "leading zero"},
      {"-", 1, "expected a digit"},
      {"1.", 2, "expected a digit after '.'"},
      {".5", 0, "expected a JSON value, found '.'"},
      {"1e", 2, "expected a digit in exponent"},
      {"+1", 0, "found '+'"},
      {"1e400", 0, "number out of range"},
      {"-1e400", 0, "number out of range"},
      {"NaN", 0, "found 'N'"},
      {"Infinity", 0, "found 'I'"},
      {"tru", 0, "expected 'true'"},
      {"nul", 0, "expected 'null'"},
      {"\"abc", 4, "unterminated string"},
      {"\"\\x\"", 1, "invalid escape"},
      {"\"\\u12\"", 1, "\\u escape needs 4 hex digits"},
      {"\"\\ud800\"", 1, "unpaired high surrogate"},
      {"\"\\ud800\\u0041\"", 1, "unpaired high surrogate"},
      {"\"\\udc00\"", 1, "unpaired low surrogate"},
      {"\"a\x01\"", 2, "control character 0x01"},
      {"\"a\nb\"", 2, "control character 0x0a"},
      {"\"\xff\"", 1, "invalid UTF-8"},
      {"\"\xc0\xaf\"", 1, "invalid UTF-8"},          // overlong '/'
      {"\"\xed\xa0\x80\"", 1, "invalid UTF-8"},      // encoded surrogate
      {"\"\xf4\x90\x80\x80\"", 1, "invalid UTF-8"},  // > U+10FFFF
      {"\"\xe2\x82\"", 1, "invalid UTF-8"},          // truncated sequence
      {"\xef\xbb\xbf{}", 0, "found byte 0xef"},      // BOM
      {"{\"a\":1,\"a\":2}", 7, "duplicate key \"a\""},
      {"[\n  1,\n  x]", 9, "line 3, column 3"},
  };
  for (const Case& c : cases) {
    INFO("input: " << c.text);
    std::size_t offset = 12345;
    std::string msg = parse_error(c.text, &offset);
    CHECK(msg.find(c.fragment) != std::string::npos);
    CHECK(offset == c.offset);
    CHECK(msg.find(fmt::format("at offset {}", c.offset)) != std::string::npos);
    CHECK(msg.rfind("json: ", 0) == 0);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("json: nesting is limited, not a stack overflow", "[json]") {
  std::string ok = std::string(256, '[') + std::string(256, ']');
  CHECK(parse(ok).is_array());
  std::string deep = std::string(257, '[') + std::string(257, ']');
  CHECK(parse_error(deep).find("nesting deeper than 256 levels") != std::string::npos);
  std::string hostile(1'000'000, '[');  // would overflow any unbounded recursion
  CHECK(parse_error(hostile).find("nesting deeper") != std::string::npos);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  CHECK(parse_error(objects).find("nesting deeper") != std::string::npos);
  plx::json::ParseOptions shallow;
  shallow.max_depth = 2;
  CHECK(parse("[[1]]", shallow).is_array());
  CHECK_THROWS_AS(parse("[[[1]]]", shallow), ParseError);
}

TEST_CASE("json: random documents round-trip exactly", "[json][fuzz]") {
  std::mt19937 rng(20240611);
  for (int i = 0; i < 2000; ++i) {
    Value v = random_value(rng, 0);
    std::string compact = v.dump(), pretty = v.dump(2);
    INFO(compact);
    REQUIRE(parse(compact) == v);
    REQUIRE(parse(pretty) == v);
    REQUIRE(parse(compact).dump() == compact);  // deterministic: same value, same bytes
    REQUIRE(parse(pretty).dump(2) == pretty);
  }
}

TEST_CASE("json: truncations and mutations never crash", "[json][fuzz]") {
  std::mt19937 rng(7);
  for (int doc = 0; doc < 60; ++doc) {
    Value v = Value::object();
    v.set("doc", doc);
    v.set("payload", random_value(rng, 0));
    v.set("more", random_value(rng, 0));
    const std::string text = v.dump(doc % 2 == 0 ? -1 : 2);
    // Every strict prefix of an object is incomplete: it must fail cleanly.
    for (std::size_t n = 0; n < text.size(); ++n) {
      INFO("prefix " << n << " of " << text);
      CHECK_THROWS_AS(parse(text.substr(0, n)), ParseError);
    }
    static const char kInteresting[] = "{}[]\",:\\ 0-.eE\x01\x80\xff\xc3utn";
    for (int m = 0; m < 300; ++m) {
      std::string mutated = text;
      int edits = std::uniform_int_distribution<int>(1, 4)(rng);
      for (int e = 0; e < edits && !mutated.empty(); ++e) {
        std::size_t at = std::uniform_int_distribution<std::size_t>(0, mutated.size() - 1)(rng);
        char c = kInteresting[std::uniform_int_distribution<int>(0, sizeof kInteresting - 2)(rng)];
        switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
          case 0: mutated[at] = c; break;
          case 1: mutated.insert(mutated.begin() + static_cast<long>(at), c); break;
          case 2: mutated.erase(at, 1); break;
          default: mutated[at] = static_cast<char>(rng()); break;
        }
      }
      INFO("mutated: " << mutated);
      parse_never_crashes(mutated);
    }
  }
  for (int i = 0; i < 3000; ++i) {  // plain random bytes
    std::string junk(std::uniform_int_distribution<int>(0, 40)(rng), '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    parse_never_crashes(junk);
  }
}

TEST_CASE("json: utf8 validation", "[json]") {
  CHECK(plx::json::is_valid_utf8(""));
  CHECK(plx::json::is_valid_utf8("plain ascii"));
  CHECK(plx::json::is_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  CHECK_FALSE(plx::json::is_valid_utf8("\x80"));
  CHECK_FALSE(plx::json::is_valid_utf8("\xc3"));
  CHECK_FALSE(plx::json::is_valid_utf8("\xe0\x80\x80"));  // overlong
  CHECK_FALSE(plx::json::is_valid_utf8("\xed\xbf\xbf"));  // surrogate
  CHECK(plx::json::quote("a\"b") == R"("a\"b")");
}
