#include "setdet/io/pth.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <unordered_map>

#include "setdet/core/error.h"
#include "setdet/core/io/zip_archive.h"

namespace setdet {
namespace {

// Containers nested deeper than this are refused (a state_dict nests a handful of levels); it
// bounds the only recursion over pickled values (hashing tuple keys).
constexpr int kMaxDepth = 1000;
// Objects one data.pkl may build (a state_dict needs about ten per tensor).
constexpr size_t kMaxObjects = size_t{1} << 22;

// Python objects as far as a state_dict needs them.
enum class Kind {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kBytes,
  kTuple,
  kList,
  kDict,
  kGlobal,   // s = "module.name"
  kStorage,  // s = its zip record ("data/0"), storage = its type and element count
  kTensor,   // tensor = how to view its storage (checked when the tensor is materialised)
  kObject,   // anything else: s = the global that built it
};

struct PyValue;
// Every value is owned by the Unpickler's arena: containers hold plain pointers, so cycles (a list
// appended to itself) and deep nesting are freed without recursion.
using Value = PyValue*;

struct DictData {
  std::vector<std::pair<Value, Value>> entries;  // in insertion order
  std::unordered_map<int64_t, size_t> index;     // interned hashable key -> position in entries
  bool ordered = false;                          // collections.OrderedDict
};

struct StorageData {
  std::string type;  // "torch.FloatStorage"
  at::ScalarType dtype = at::kFloat;
  int64_t numel = 0;  // as the pickle declares it
};

struct TensorData {
  std::string rebuilt_by;  // "torch._utils._rebuild_tensor_v2"
  Value storage = nullptr;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
};

constexpr int64_t kKeyUnknown = -2;
constexpr int64_t kUnhashable = -1;

struct PyValue {
  Kind kind = Kind::kNone;
  int depth = 0;              // nesting levels below this value (0 for scalars)
  int64_t key = kKeyUnknown;  // interned dict key, kUnhashable, or not yet computed
  int64_t i = 0;              // int, bool
  double f = 0.0;             // float
  std::string s;              // str, bytes, global / object name, storage record
  std::vector<Value> items;   // tuple, list
  std::unique_ptr<DictData> dict;
  std::unique_ptr<StorageData> storage;
  std::unique_ptr<TensorData> tensor;
};

std::string describe(const PyValue& v) {
  switch (v.kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return v.i ? "the bool True" : "the bool False";
    case Kind::kInt:
      return "an int " + std::to_string(v.i);
    case Kind::kFloat:
      return "a float " + c10::str(v.f);
    case Kind::kString:
      return "a str '" + v.s.substr(0, 60) + (v.s.size() > 60 ? "...'" : "'");
    case Kind::kBytes:
      return "a bytes object of " + std::to_string(v.s.size());
    case Kind::kTuple:
      return "a tuple of " + std::to_string(v.items.size());
    case Kind::kList:
      return "a list of " + std::to_string(v.items.size());
    case Kind::kDict:
      return v.dict->ordered ? "an OrderedDict" : "a dict";
    case Kind::kGlobal:
      return "the global " + v.s;
    case Kind::kStorage:
      return "a storage";
    case Kind::kTensor:
      return "a tensor";
    case Kind::kObject:
      return "a " + v.s + " object (unsupported global " + v.s + ")";
  }
  return "?";
}

std::optional<at::ScalarType> storage_dtype(const std::string& global) {
  static const std::unordered_map<std::string, at::ScalarType> kTypes = {
      {"torch.FloatStorage", at::kFloat},
      {"torch.DoubleStorage", at::kDouble},
      {"torch.HalfStorage", at::kHalf},
      {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},
      {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},
      {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},
      {"torch.BoolStorage", at::kBool},
      {"torch.ComplexFloatStorage", at::kComplexFloat},
      {"torch.ComplexDoubleStorage", at::kComplexDouble},
      {"torch.UntypedStorage", at::kByte},
  };
  auto it = kTypes.find(global);
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

std::string shape_text(const std::vector<int64_t>& v) { return c10::str(c10::IntArrayRef(v)); }

// The records of a torch.save archive live under one top-level folder (its name is the file's
// stem when torch.save wrote it): "<folder>/data.pkl", "<folder>/data/0", ...
class TorchArchive {
 public:
  explicit TorchArchive(const std::string& path) : zip_(path) {
    if (!zip_.records().empty()) {
      const std::string& first = zip_.records().front().name;
      prefix_ = first.substr(0, first.find('/') + 1);
    }
  }
  const std::string& path() const { return zip_.path(); }
  const ZipArchive::Record* find(const std::string& name) const {
    return zip_.find(prefix_ + name);
  }
  bool has(const std::string& name) const { return find(name) != nullptr; }
  std::string read(const std::string& name) const {
    const ZipArchive::Record* r = find(name);
    SETDET_CHECK(r != nullptr, path(), ": the archive has no record ", name);
    return zip_.read(*r);
  }
  void read_into(const ZipArchive::Record& r, void* out) const { zip_.read(r, out); }
  void verify_all() const { zip_.verify_all(); }

 private:
  ZipArchive zip_;
  std::string prefix_;
};

TorchArchive open_archive(const std::string& path) {
  SETDET_CHECK(std::filesystem::is_regular_file(path), path, ": file not found");
  try {
    return TorchArchive(path);
  } catch (const Error&) {
    char first = 0;
    std::ifstream(path, std::ios::binary).read(&first, 1);
    SETDET_CHECK(static_cast<uint8_t>(first) != 0x80, path,
                 ": not a zip archive but a bare pickle: the legacy format of torch.save "
                 "(_use_new_zipfile_serialization=False, or PyTorch < 1.6), which is not "
                 "supported; re-save it with PyTorch >= 1.6");
    throw;
  }
}

// Pickle protocols 0-5 as far as torch.save's data.pkl needs them (it writes protocol 2).
// The callables the pickle names are never run: the few a state_dict uses are interpreted here,
// every other one yields an opaque kObject.
class Unpickler {
 public:
  Unpickler(const TorchArchive& archive, const char* data, size_t size,
            std::string record = "data.pkl")
      : path_(archive.path()),
        record_(std::move(record)),
        archive_(archive),
        data_(data),
        size_(size) {}

  Value run() {
    while (true) {
      op_pos_ = pos_;
      if (pos_ >= size_) fail("ends at byte " + std::to_string(pos_) + " without a STOP opcode");
      const uint8_t op = read_u8();
      switch (op) {
        case 0x80:
          read_u8();
          break;  // PROTO
        case 0x95:
          read_bytes(8);
          break;  // FRAME: the framed data follows inline
        case '.':
          return pop();  // STOP
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case '0':
          pop();
          break;  // POP
        case '1':
          pop_mark();
          break;  // POP_MARK
        case '2':
          push(top());
          break;  // DUP
        case 'N':
          push(new_value(Kind::kNone));
          break;
        case 0x88:
          push(new_int(Kind::kBool, 1));
          break;  // NEWTRUE
        case 0x89:
          push(new_int(Kind::kBool, 0));
          break;  // NEWFALSE
        case 'J':
          push(new_int(Kind::kInt, static_cast<int32_t>(read_le(4))));
          break;  // BININT
        case 'K':
          push(new_int(Kind::kInt, read_u8()));
          break;  // BININT1
        case 'M':
          push(new_int(Kind::kInt, static_cast<int64_t>(read_le(2))));
          break;  // BININT2
        case 0x8a:
          push(read_long(read_u8()));
          break;  // LONG1
        case 0x8b:
          push(read_long(read_size(4)));
          break;  // LONG4
        case 'I':
          push(read_text_int());
          break;  // INT
        case 'L':
          push(read_text_int());
          break;     // LONG
        case 'G': {  // BINFLOAT
          uint64_t bits = 0;
          for (const char c : std::string(read_bytes(8), 8)) {
            bits = (bits << 8) | static_cast<uint8_t>(c);
          }
          Value v = new_value(Kind::kFloat);
          std::memcpy(&v->f, &bits, sizeof(double));
          push(v);
          break;
        }
        case 'X':
          push(read_text(Kind::kString, read_size(4)));
          break;  // BINUNICODE
        case 0x8c:
          push(read_text(Kind::kString, read_u8()));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(read_text(Kind::kString, read_size(8)));
          break;  // BINUNICODE8
        case 'T':
          push(read_text(Kind::kString, read_size(4)));
          break;  // BINSTRING
        case 'U':
          push(read_text(Kind::kString, read_u8()));
          break;  // SHORT_BINSTRING
        case 'B':
          push(read_text(Kind::kBytes, read_size(4)));
          break;  // BINBYTES
        case 'C':
          push(read_text(Kind::kBytes, read_u8()));
          break;  // SHORT_BINBYTES
        case 0x8e:
          push(read_text(Kind::kBytes, read_size(8)));
          break;  // BINBYTES8
        case '}':
          push(new_dict(false));
          break;  // EMPTY_DICT
        case ']':
          push(new_value(Kind::kList));
          break;  // EMPTY_LIST
        case ')':
          push(new_value(Kind::kTuple));
          break;  // EMPTY_TUPLE
        case 0x8f:
          push(new_text(Kind::kObject, "builtins.set"));
          break;  // EMPTY_SET
        case 't':
          push(new_sequence(Kind::kTuple, pop_mark()));
          break;  // TUPLE
        case 'l':
          push(new_sequence(Kind::kList, pop_mark()));
          break;  // LIST
        case 0x85:
          push(new_sequence(Kind::kTuple, pop_n(1)));
          break;  // TUPLE1
        case 0x86:
          push(new_sequence(Kind::kTuple, pop_n(2)));
          break;  // TUPLE2
        case 0x87:
          push(new_sequence(Kind::kTuple, pop_n(3)));
          break;  // TUPLE3
        case 0x91:
          pop_mark();
          push(new_text(Kind::kObject, "builtins.frozenset"));
          break;
        case 'd': {  // DICT
          Value dict = new_dict(false);
          set_items(dict, pop_mark());
          push(dict);
          break;
        }
        case 'a': {  // APPEND
          Value item = pop();
          append(top(), {item});
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Value> items = pop_mark();
          append(top(), items);
          break;
        }
        case 0x90:
          pop_mark();
          break;     // ADDITEMS (to a set: sets are opaque)
        case 's': {  // SETITEM
          Value value = pop();
          Value key = pop();
          set_target_items(top(), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Value> kv = pop_mark();
          set_target_items(top(), kv);
          break;
        }
        case 'c': {  // GLOBAL
          std::string module = read_line();
          std::string name = read_line();
          push(new_text(Kind::kGlobal, module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value name = pop();
          Value module = pop();
          if (module->kind != Kind::kString || name->kind != Kind::kString) {
            fail("STACK_GLOBAL expects two str, found " + describe(*module) + " and " +
                 describe(*name));
          }
          push(new_text(Kind::kGlobal, module->s + "." + name->s));
          break;
        }
        case 'R': {  // REDUCE
          Value args = pop();
          Value callable = pop();
          push(call(callable, args, 0));
          break;
        }
        case 0x81: {  // NEWOBJ
          pop();      // the arguments
          Value cls = pop();
          push(construct(cls));
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          pop();
          pop();
          Value cls = pop();
          push(construct(cls));
          break;
        }
        case 'b':
          pop();
          break;  // BUILD: object state (an OrderedDict's _metadata) is not needed
        case 'Q':
          push(persistent_load(pop()));
          break;  // BINPERSID
        case 'P':
          fail("text persistent ids (PERSID) are not used by torch.save");
        case 'q':
          memo_[read_u8()] = top();
          break;  // BINPUT
        case 'r':
          memo_[read_le(4)] = top();
          break;  // LONG_BINPUT
        case 'p':
          memo_[read_text_index()] = top();
          break;  // PUT
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          push(memo_get(read_u8()));
          break;  // BINGET
        case 'j':
          push(memo_get(read_le(4)));
          break;  // LONG_BINGET
        case 'g':
          push(memo_get(read_text_index()));
          break;  // GET
        default: {
          const char shown = (op >= 0x20 && op < 0x7f) ? static_cast<char>(op) : '?';
          char hex[8];
          std::snprintf(hex, sizeof(hex), "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex + " ('" + shown + "') at byte " +
               std::to_string(op_pos_));
        }
      }
    }
  }

  // The tensors of the state_dict in `top` (see load_pth_state_dict), materialised.
  NamedTensors state_dict(Value top) {
    SETDET_CHECK(top->kind == Kind::kDict, path_, ": the pickled object is ", describe(*top),
                 ", expected a dict of tensors (a state_dict) or a dict with a 'state_dict' or "
                 "'model' entry holding one");
    Value chosen = top;
    std::string where = "the top-level dict";
    for (int depth = 0; depth < 4; ++depth) {
      Value next = nullptr;
      for (const char* key : {"state_dict", "model"}) {
        const Value v = dict_find(*chosen, key);
        if (v != nullptr && v->kind == Kind::kDict) {
          next = v;
          where += std::string("'s '") + key + "' entry";
          break;
        }
      }
      if (next == nullptr) break;
      chosen = next;
    }
    const auto& entries = chosen->dict->entries;
    size_t tensors = 0;
    for (const auto& kv : entries) tensors += kv.second->kind == Kind::kTensor;
    if (tensors == 0) {
      std::string keys;
      for (size_t k = 0; k < entries.size() && k < 10; ++k) {
        const auto& [key, value] = entries[k];
        keys += (k ? ", " : "") +
                (key->kind == Kind::kString ? "'" + key->s + "'" : describe(*key)) + ": " +
                describe(*value);
      }
      if (entries.size() > 10) keys += ", ...";
      throw Error(path_ + ": no dict of tensors found: " + where + " holds no tensors (" +
                  (keys.empty() ? std::string("it is empty") : keys) +
                  "); expected a state_dict, or a dict with a 'state_dict' or 'model' entry "
                  "holding one");
    }
    NamedTensors out;
    out.reserve(entries.size());
    for (const auto& [key, value] : entries) {
      SETDET_CHECK(key->kind == Kind::kString, path_, ": ", where, " has a key that is ",
                   describe(*key), ", expected str names");
      SETDET_CHECK(value->kind == Kind::kTensor, path_, ": entry '", key->s, "' of ", where, " is ",
                   describe(*value), ", expected a tensor");
      out.emplace_back(key->s, materialize(key->s, *value->tensor));
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": " + record_ + ": " + what);
  }
  std::string at_byte() const { return " at byte " + std::to_string(op_pos_); }

  void need(size_t n) const {
    if (n > size_ - pos_) {
      fail("truncated: the opcode at byte " + std::to_string(op_pos_) + " needs " +
           std::to_string(n) + " more bytes, " + std::to_string(size_ - pos_) + " left");
    }
  }
  uint8_t read_u8() {
    need(1);
    return static_cast<uint8_t>(data_[pos_++]);
  }
  const char* read_bytes(size_t n) {
    need(n);
    const char* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint64_t read_le(size_t n) {
    const char* p = read_bytes(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | static_cast<uint8_t>(p[k]);
    return v;
  }
  size_t read_size(size_t n) {
    const uint64_t v = read_le(n);
    if (v > size_ - pos_) {
      fail("length " + std::to_string(v) + at_byte() + " exceeds the " +
           std::to_string(size_ - pos_) + " bytes left in the pickle");
    }
    return static_cast<size_t>(v);
  }
  std::string read_line() {
    const size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ >= size_) fail("truncated: unterminated line after byte " + std::to_string(op_pos_));
    return std::string(data_ + start, data_ + pos_++);
  }
  Value read_text(Kind kind, size_t n) { return new_text(kind, std::string(read_bytes(n), n)); }
  // LONG1 / LONG4: little-endian two's complement of n bytes.
  Value read_long(size_t n) {
    if (n > 8) {
      read_bytes(n);
      return new_text(Kind::kObject, "int wider than 64 bits");
    }
    const char* p = read_bytes(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | static_cast<uint8_t>(p[k]);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(p[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
    return new_int(Kind::kInt, static_cast<int64_t>(v));
  }
  Value read_text_int() {
    std::string line = read_line();
    if (line == "00") return new_int(Kind::kBool, 0);
    if (line == "01") return new_int(Kind::kBool, 1);
    if (!line.empty() && line.back() == 'L') line.pop_back();
    try {
      size_t used = 0;
      const int64_t v = std::stoll(line, &used);
      if (used == line.size()) return new_int(Kind::kInt, v);
    } catch (const std::exception&) {
    }
    fail("malformed integer '" + line.substr(0, 60) + "'" + at_byte());
  }
  uint64_t read_text_index() {
    const std::string line = read_line();
    try {
      size_t used = 0;
      const unsigned long long v = std::stoull(line, &used);
      if (used == line.size()) return v;
    } catch (const std::exception&) {
    }
    fail("malformed memo index '" + line.substr(0, 60) + "'" + at_byte());
  }

  // ---- the arena ----
  Value new_value(Kind kind) {
    if (arena_.size() >= kMaxObjects) {
      fail("the pickle builds more than " + std::to_string(kMaxObjects) + " objects (stopped" +
           at_byte() + "); a state_dict needs about ten per tensor");
    }
    arena_.emplace_back();
    arena_.back().kind = kind;
    return &arena_.back();
  }
  Value new_int(Kind kind, int64_t i) {
    Value v = new_value(kind);
    v->i = i;
    return v;
  }
  Value new_text(Kind kind, std::string s) {
    Value v = new_value(kind);
    v->s = std::move(s);
    return v;
  }
  Value new_dict(bool ordered) {
    Value v = new_value(Kind::kDict);
    v->dict = std::make_unique<DictData>();
    v->dict->ordered = ordered;
    return v;
  }
  Value new_sequence(Kind kind, std::vector<Value> items) {
    Value v = new_value(kind);
    for (const Value item : items) nest(*v, *item);
    v->items = std::move(items);
    return v;
  }
  // `container` now holds `item`: its depth grows to item's + 1 (lists and dicts may be filled
  // after being nested elsewhere, so their containers' depths are lower bounds; tuples are exact).
  void nest(PyValue& container, const PyValue& item) {
    container.depth = std::max(container.depth, item.depth + 1);
    if (container.depth > kMaxDepth) {
      fail("objects nested more than " + std::to_string(kMaxDepth) + " levels deep" + at_byte());
    }
  }

  // ---- dict keys: Python-equal hashable values intern to the same id (True == 1) ----
  int64_t intern(std::string text) {
    const auto [it, inserted] = interned_.emplace(std::move(text), interned_.size());
    return it->second;
  }
  // Recursion only through tuples, whose depth is at most kMaxDepth.
  int64_t key_id(PyValue& v) {
    if (v.key != kKeyUnknown) return v.key;
    switch (v.kind) {
      case Kind::kNone:
        v.key = intern("n");
        break;
      case Kind::kBool:
      case Kind::kInt:
        v.key = intern("i" + std::to_string(v.i));
        break;
      case Kind::kString:
        v.key = intern("s" + v.s);
        break;
      case Kind::kBytes:
        v.key = intern("b" + v.s);
        break;
      case Kind::kTuple: {
        std::string text = "t";
        for (const Value item : v.items) {
          const int64_t k = key_id(*item);
          if (k == kUnhashable) {
            text.clear();
            break;
          }
          text += std::to_string(k) + ",";
        }
        v.key = text.empty() ? kUnhashable : intern(std::move(text));
        break;
      }
      default:
        v.key = kUnhashable;
    }
    return v.key;
  }
  void dict_set(PyValue& dict, Value key, Value value) {
    nest(dict, *key);
    nest(dict, *value);
    auto& d = *dict.dict;
    const int64_t k = key_id(*key);
    if (k != kUnhashable) {
      const auto [it, inserted] = d.index.emplace(k, d.entries.size());
      if (!inserted) {
        d.entries[it->second].second = value;
        return;
      }
    }
    d.entries.emplace_back(key, value);
  }
  Value dict_find(const PyValue& dict, const std::string& key) const {
    const auto id = interned_.find("s" + key);
    if (id == interned_.end()) return nullptr;
    const auto it = dict.dict->index.find(id->second);
    return it == dict.dict->index.end() ? nullptr : dict.dict->entries[it->second].second;
  }

  // ---- the stack ----
  void push(Value v) { stack_.push_back(v); }
  Value pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("stack underflow" + at_byte());
    }
    Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value& top() {
    if (stack_.empty()) fail("stack underflow" + at_byte());
    return stack_.back();
  }
  std::vector<Value> pop_n(size_t n) {
    std::vector<Value> out(n);
    for (size_t k = n; k-- > 0;) out[k] = pop();
    return out;
  }
  std::vector<Value> pop_mark() {
    if (marks_.empty()) fail("no MARK before the opcode" + at_byte());
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value> out(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return out;
  }
  Value memo_get(uint64_t key) const {
    auto it = memo_.find(key);
    if (it == memo_.end()) {
      fail("memo entry " + std::to_string(key) + " read" + at_byte() + " was never stored");
    }
    return it->second;
  }

  void append(Value target, const std::vector<Value>& items) {
    if (target->kind == Kind::kList) {
      for (const Value item : items) nest(*target, *item);
      target->items.insert(target->items.end(), items.begin(), items.end());
    } else if (target->kind != Kind::kObject) {
      fail("APPEND to " + describe(*target) + at_byte());
    }
  }
  void set_items(Value dict, const std::vector<Value>& kv) {
    if (kv.size() % 2 != 0) fail("odd number of items for a dict" + at_byte());
    for (size_t k = 0; k < kv.size(); k += 2) dict_set(*dict, kv[k], kv[k + 1]);
  }
  void set_target_items(Value target, const std::vector<Value>& kv) {
    if (target->kind == Kind::kDict) {
      set_items(target, kv);
    } else if (target->kind != Kind::kObject) {  // e.g. a dict subclass: its items are not needed
      fail("SETITEM on " + describe(*target) + at_byte());
    }
  }

  Value construct(Value cls) {
    if (cls->kind == Kind::kGlobal && cls->s == "collections.OrderedDict") return new_dict(true);
    return new_text(Kind::kObject, cls->kind == Kind::kGlobal ? cls->s : "object");
  }

  // REDUCE: the globals a state_dict uses are interpreted, nothing is ever called.
  Value call(Value callable, Value args, int nesting) {
    if (callable->kind == Kind::kObject) return new_text(Kind::kObject, callable->s);
    if (callable->kind != Kind::kGlobal) fail("REDUCE calls " + describe(*callable) + at_byte());
    if (args->kind != Kind::kTuple) {
      fail("REDUCE arguments for " + callable->s + " are " + describe(*args) +
           ", expected a tuple," + at_byte());
    }
    const std::string& name = callable->s;
    const std::vector<Value>& a = args->items;
    if (name == "collections.OrderedDict" || name == "builtins.dict" ||
        name == "__builtin__.dict") {
      Value dict = new_dict(name == "collections.OrderedDict");
      if (!a.empty() && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple)) {
        for (const Value pair : a[0]->items) {
          if (pair->kind != Kind::kTuple || pair->items.size() != 2) {
            fail(name + " built from " + describe(*pair) + ", expected (key, value) pairs" +
                 at_byte());
          }
          dict_set(*dict, pair->items[0], pair->items[1]);
        }
      }
      return dict;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4) fail(name + " with " + std::to_string(a.size()) + " arguments" + at_byte());
      return rebuild_tensor(name, a[0], a[1], a[2], a[3]);
    }
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->kind != Kind::kTensor) {
        fail(name + " expects a tensor, found " + (a.empty() ? "no arguments" : describe(*a[0])) +
             at_byte());
      }
      return a[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state)
      if (a.size() < 3) fail(name + " with " + std::to_string(a.size()) + " arguments" + at_byte());
      if (nesting >= 4) fail(name + " nested " + std::to_string(nesting) + " times" + at_byte());
      return call(a[0], a[2], nesting + 1);
    }
    if (name == "torch.Size" && a.size() == 1 && a[0]->kind == Kind::kTuple) return a[0];
    return new_text(Kind::kObject, name);
  }

  std::vector<int64_t> int_tuple(const std::string& fn, const std::string& what, Value v) const {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList) {
      fail(fn + ": the tensor's " + what + " is " + describe(*v) + ", expected a tuple of ints" +
           at_byte());
    }
    std::vector<int64_t> out;
    out.reserve(v->items.size());
    for (const Value item : v->items) {
      if (item->kind != Kind::kInt) {
        fail(fn + ": the tensor's " + what + " holds " + describe(*item) + ", expected ints" +
             at_byte());
      }
      out.push_back(item->i);
    }
    return out;
  }

  // The view is checked against its storage when the tensor is materialised, where its name is
  // known.
  Value rebuild_tensor(const std::string& fn, Value storage, Value offset, Value size,
                       Value stride) {
    if (storage->kind != Kind::kStorage) {
      fail(fn + " expects a storage, found " + describe(*storage) + at_byte());
    }
    if (offset->kind != Kind::kInt) {
      fail(fn + ": storage offset is " + describe(*offset) + ", expected an int" + at_byte());
    }
    Value t = new_value(Kind::kTensor);
    t->tensor = std::make_unique<TensorData>();
    t->tensor->rebuilt_by = fn;
    t->tensor->storage = storage;
    t->tensor->offset = offset->i;
    t->tensor->sizes = int_tuple(fn, "size", size);
    t->tensor->strides = int_tuple(fn, "stride", stride);
    return t;
  }

  // ('storage', torch.<T>Storage, key, location, numel): the elements are in `data/<key>`.
  Value persistent_load(Value pid) {
    const auto& p = pid->items;
    if (pid->kind != Kind::kTuple || p.size() != 5 || p[0]->kind != Kind::kString ||
        p[0]->s != "storage" || p[2]->kind != Kind::kString || p[4]->kind != Kind::kInt) {
      fail("persistent id" + at_byte() + " is " + describe(*pid) +
           ", expected ('storage', type, key, location, numel)");
    }
    if (p[1]->kind != Kind::kGlobal) {
      fail("storage type is " + describe(*p[1]) + ", expected a global such as torch.FloatStorage");
    }
    const auto dtype = storage_dtype(p[1]->s);
    if (!dtype) fail("unsupported storage type " + p[1]->s + " (quantized or unknown)");
    const std::string record = "data/" + p[2]->s;
    const std::string cache_key = record + "|" + p[1]->s;
    if (auto it = storages_.find(cache_key); it != storages_.end()) return it->second;
    const int64_t numel = p[4]->i;
    if (numel < 0) fail("storage " + record + " declares " + std::to_string(numel) + " elements");
    Value v = new_text(Kind::kStorage, record);
    v->storage = std::make_unique<StorageData>();
    v->storage->type = p[1]->s;
    v->storage->dtype = *dtype;
    v->storage->numel = numel;
    storages_.emplace(cache_key, v);
    return v;
  }

  // ---- tensors ----
  // All elements of a storage as a 1-D tensor, read (and its CRC-32 checked) once.
  at::Tensor storage_elements(const std::string& tensor, const PyValue& storage) {
    const StorageData& st = *storage.storage;
    const std::string cache_key = storage.s + "|" + st.type;
    if (auto it = loaded_.find(cache_key); it != loaded_.end()) return it->second;
    const ZipArchive::Record* record = archive_.find(storage.s);
    SETDET_CHECK(record != nullptr, path_, ": tensor '", tensor, "': its storage record ",
                 storage.s, " is missing from the archive");
    const uint64_t element = c10::elementSize(st.dtype);
    SETDET_CHECK(static_cast<uint64_t>(st.numel) <= record->size / element, path_, ": tensor '",
                 tensor, "': truncated storage ", storage.s, ": it holds ", record->size,
                 " bytes, the pickle declares ", st.numel, " elements of ", st.type, " (", element,
                 " bytes each)");
    at::Tensor all;
    try {
      all = at::empty({static_cast<int64_t>((record->size + element - 1) / element)},
                      at::TensorOptions().dtype(st.dtype));
    } catch (const c10::Error&) {
      throw Error(path_ + ": tensor '" + tensor + "': cannot allocate the " +
                  std::to_string(record->size) + " bytes of storage " + storage.s);
    }
    archive_.read_into(*record, all.data_ptr());
    at::Tensor elements = all.narrow(0, 0, st.numel);
    loaded_.emplace(cache_key, elements);
    return elements;
  }

  at::Tensor materialize(const std::string& name, const TensorData& t) {
    const std::string what = path_ + ": tensor '" + name + "'";
    const PyValue& storage = *t.storage;
    const int64_t capacity = storage.storage->numel;
    SETDET_CHECK(t.sizes.size() == t.strides.size(), what, ": ", t.sizes.size(), " sizes ",
                 shape_text(t.sizes), " but ", t.strides.size(), " strides ",
                 shape_text(t.strides));
    SETDET_CHECK(t.offset >= 0, what, ": storage offset ", t.offset, " is negative");
    int64_t numel = 1;
    bool overflow = false;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      SETDET_CHECK(t.sizes[d] >= 0, what, ": size ", shape_text(t.sizes), " has the negative ",
                   "dimension ", t.sizes[d], " (dimension ", d, ")");
      SETDET_CHECK(t.strides[d] >= 0, what, ": stride ", shape_text(t.strides),
                   " has the negative value ", t.strides[d], " (dimension ", d, ")");
      overflow = overflow || __builtin_mul_overflow(numel, t.sizes[d], &numel);
    }
    const auto options = at::TensorOptions().dtype(storage.storage->dtype);
    if (!overflow && numel == 0) return at::empty(t.sizes, options);
    SETDET_CHECK(!overflow, what, ": size ", shape_text(t.sizes), " holds more than 2^63 elements");
    SETDET_CHECK(numel <= capacity, what, ": size ", shape_text(t.sizes), " holds ", numel,
                 " elements, more than the ", capacity, " of its storage ", storage.s,
                 " (views larger than their storage, such as stride-0 expansions, are not "
                 "supported)");
    int64_t last = t.offset;  // index of the view's last element in the storage
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      int64_t extent = 0;
      overflow = overflow || __builtin_mul_overflow(t.sizes[d] - 1, t.strides[d], &extent) ||
                 __builtin_add_overflow(last, extent, &last);
    }
    SETDET_CHECK(!overflow, what, ": a view at offset ", t.offset, " with size ",
                 shape_text(t.sizes), " and stride ", shape_text(t.strides),
                 " overflows 64-bit element indices");
    SETDET_CHECK(last < capacity, what, ": a view at offset ", t.offset, " with size ",
                 shape_text(t.sizes), " and stride ", shape_text(t.strides), " reaches element ",
                 last, " of storage ", storage.s, ", which holds ", capacity);
    return storage_elements(name, storage)
        .as_strided(t.sizes, t.strides, t.offset)
        .clone(at::MemoryFormat::Contiguous);
  }

  std::string path_;
  std::string record_;
  const TorchArchive& archive_;
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::deque<PyValue> arena_;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  std::unordered_map<std::string, int64_t> interned_;
  std::unordered_map<std::string, Value> storages_;
  std::unordered_map<std::string, at::Tensor> loaded_;
};

}  // namespace

NamedTensors load_pth_state_dict(const std::string& path) {
  const TorchArchive archive = open_archive(path);
  SETDET_CHECK(!archive.has("constants.pkl"), path,
               ": a TorchScript archive (torch.jit.save, or a setdet checkpoint), not a state_dict "
               "written by torch.save");
  SETDET_CHECK(archive.has("data.pkl"), path,
               ": the zip archive has no data.pkl record: not written by torch.save");
  if (archive.has("byteorder")) {
    const std::string order = archive.read("byteorder");
    SETDET_CHECK(order == "little", path, ": byteorder record says '", order.substr(0, 20),
                 "', only little-endian storages are supported");
  }
  const std::string pickle = archive.read("data.pkl");
  try {
    Unpickler unpickler(archive, pickle.data(), pickle.size());
    return unpickler.state_dict(unpickler.run());
  } catch (const std::bad_alloc&) {
    throw Error(path + ": out of memory while reading its tensors");
  }
}

void check_torchscript_archive(const std::string& path) {
  const TorchArchive archive = open_archive(path);
  archive.verify_all();
  for (const char* name : {"data.pkl", "constants.pkl"}) {
    if (!archive.has(name)) continue;
    const std::string pickle = archive.read(name);
    try {
      Unpickler(archive, pickle.data(), pickle.size(), name).run();
    } catch (const std::bad_alloc&) {
      throw Error(path + ": " + name + ": out of memory while reading it");
    }
  }
}

bool is_torchscript_archive(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  try {
    return TorchArchive(path).has("constants.pkl");
  } catch (const Error&) {
    return false;
  }
}

uint32_t tensor_crc32(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return crc32(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
}

}  // namespace setdet
