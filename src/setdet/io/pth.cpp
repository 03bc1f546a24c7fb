#include "setdet/io/pth.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <unordered_map>

#include "setdet/core/error.h"

namespace setdet {
namespace {

// Python objects as far as a state_dict needs them. Containers are shared (the pickle memo refers
// to them, and SETITEMS fills a dict after it was memoised), so values are held by shared_ptr.
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
  kStorage,  // tensor = all its elements (1-D), s = its zip record
  kTensor,
  kObject,  // anything else: s = the global that built it
};

struct PyValue;
using Value = std::shared_ptr<PyValue>;

struct PyValue {
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<Value> items;                       // tuple, list
  std::vector<std::pair<Value, Value>> entries;   // dict, in insertion order
  std::unordered_map<std::string, size_t> index;  // dict: hashable key -> position in entries
  bool ordered = false;                           // collections.OrderedDict
  at::Tensor tensor;
};

Value make(Kind kind) {
  auto v = std::make_shared<PyValue>();
  v->kind = kind;
  return v;
}

Value make_int(int64_t i) {
  auto v = make(Kind::kInt);
  v->i = i;
  return v;
}

Value make_bool(bool b) {
  auto v = make(Kind::kBool);
  v->b = b;
  return v;
}

Value make_text(Kind kind, std::string s) {
  auto v = make(kind);
  v->s = std::move(s);
  return v;
}

std::string describe(const Value& v) {
  switch (v->kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "a bool";
    case Kind::kInt:
      return "an int";
    case Kind::kFloat:
      return "a float";
    case Kind::kString:
      return "a str '" + v->s.substr(0, 60) + "'";
    case Kind::kBytes:
      return "a bytes object";
    case Kind::kTuple:
      return "a tuple of " + std::to_string(v->items.size());
    case Kind::kList:
      return "a list of " + std::to_string(v->items.size());
    case Kind::kDict:
      return v->ordered ? "an OrderedDict" : "a dict";
    case Kind::kGlobal:
      return "the global " + v->s;
    case Kind::kStorage:
      return "a storage";
    case Kind::kTensor:
      return "a tensor";
    case Kind::kObject:
      return "a " + v->s + " object (unsupported global " + v->s + ")";
  }
  return "?";
}

// Python-equal keys map to the same string (True == 1, as Python's dict has it).
std::optional<std::string> hash_key(const Value& v) {
  switch (v->kind) {
    case Kind::kNone:
      return std::string("n");
    case Kind::kBool:
      return "i" + std::to_string(v->b ? 1 : 0);
    case Kind::kInt:
      return "i" + std::to_string(v->i);
    case Kind::kString:
      return "s" + v->s;
    case Kind::kBytes:
      return "b" + v->s;
    case Kind::kTuple: {
      std::string out = "t(";
      for (const auto& item : v->items) {
        auto k = hash_key(item);
        if (!k) return std::nullopt;
        out += std::to_string(k->size()) + ":" + *k;
      }
      return out + ")";
    }
    default:
      return std::nullopt;
  }
}

void dict_set(PyValue& dict, Value key, Value value) {
  if (auto k = hash_key(key)) {
    auto [it, inserted] = dict.index.emplace(*k, dict.entries.size());
    if (!inserted) {
      dict.entries[it->second].second = std::move(value);
      return;
    }
  }
  dict.entries.emplace_back(std::move(key), std::move(value));
}

const Value* dict_find(const PyValue& dict, const std::string& key) {
  auto it = dict.index.find("s" + key);
  return it == dict.index.end() ? nullptr : &dict.entries[it->second].second;
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

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Pickle protocols 0-5 as far as torch.save's data.pkl needs them (it writes protocol 2).
// The callables the pickle names are never run: the few a state_dict uses are interpreted here,
// every other one yields an opaque kObject.
class Unpickler {
 public:
  Unpickler(std::string path, caffe2::serialize::PyTorchStreamReader& reader, const char* data,
            size_t size)
      : path_(std::move(path)), reader_(reader), data_(data), size_(size) {}

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
          push(make(Kind::kNone));
          break;
        case 0x88:
          push(make_bool(true));
          break;  // NEWTRUE
        case 0x89:
          push(make_bool(false));
          break;  // NEWFALSE
        case 'J':
          push(make_int(static_cast<int32_t>(read_le(4))));
          break;  // BININT
        case 'K':
          push(make_int(read_u8()));
          break;  // BININT1
        case 'M':
          push(make_int(static_cast<int64_t>(read_le(2))));
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
          auto v = make(Kind::kFloat);
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
          push(make(Kind::kDict));
          break;  // EMPTY_DICT
        case ']':
          push(make(Kind::kList));
          break;  // EMPTY_LIST
        case ')':
          push(make(Kind::kTuple));
          break;  // EMPTY_TUPLE
        case 0x8f:
          push(make_text(Kind::kObject, "builtins.set"));
          break;  // EMPTY_SET
        case 't':
          push(make_sequence(Kind::kTuple, pop_mark()));
          break;  // TUPLE
        case 'l':
          push(make_sequence(Kind::kList, pop_mark()));
          break;  // LIST
        case 0x85:
          push(make_sequence(Kind::kTuple, pop_n(1)));
          break;  // TUPLE1
        case 0x86:
          push(make_sequence(Kind::kTuple, pop_n(2)));
          break;  // TUPLE2
        case 0x87:
          push(make_sequence(Kind::kTuple, pop_n(3)));
          break;  // TUPLE3
        case 0x91:
          pop_mark();
          push(make_text(Kind::kObject, "builtins.frozenset"));
          break;
        case 'd': {  // DICT
          auto dict = make(Kind::kDict);
          set_items(*dict, pop_mark());
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
          push(make_text(Kind::kGlobal, module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value name = pop();
          Value module = pop();
          if (module->kind != Kind::kString || name->kind != Kind::kString) {
            fail("STACK_GLOBAL expects two str, found " + describe(module) + " and " +
                 describe(name));
          }
          push(make_text(Kind::kGlobal, module->s + "." + name->s));
          break;
        }
        case 'R': {  // REDUCE
          Value args = pop();
          Value callable = pop();
          push(call(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          Value args = pop();
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

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": data.pkl: " + what);
  }

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
    if (v > size_)
      fail("length " + std::to_string(v) + " at byte " + std::to_string(op_pos_) +
           " exceeds the pickle's size");
    return static_cast<size_t>(v);
  }
  std::string read_line() {
    const size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ >= size_) fail("truncated: unterminated line after byte " + std::to_string(op_pos_));
    return std::string(data_ + start, data_ + pos_++);
  }
  Value read_text(Kind kind, size_t n) { return make_text(kind, std::string(read_bytes(n), n)); }
  // LONG1 / LONG4: little-endian two's complement of n bytes.
  Value read_long(size_t n) {
    if (n > 8) {
      read_bytes(n);
      return make_text(Kind::kObject, "int wider than 64 bits");
    }
    const char* p = read_bytes(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | static_cast<uint8_t>(p[k]);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(p[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
    return make_int(static_cast<int64_t>(v));
  }
  Value read_text_int() {
    std::string line = read_line();
    if (line == "00") return make_bool(false);
    if (line == "01") return make_bool(true);
    if (!line.empty() && line.back() == 'L') line.pop_back();
    try {
      size_t used = 0;
      const int64_t v = std::stoll(line, &used);
      if (used == line.size()) return make_int(v);
    } catch (const std::exception&) {
    }
    fail("malformed integer '" + line + "' at byte " + std::to_string(op_pos_));
  }
  uint64_t read_text_index() {
    const std::string line = read_line();
    try {
      size_t used = 0;
      const unsigned long long v = std::stoull(line, &used);
      if (used == line.size()) return v;
    } catch (const std::exception&) {
    }
    fail("malformed memo index '" + line + "' at byte " + std::to_string(op_pos_));
  }

  void push(Value v) { stack_.push_back(std::move(v)); }
  Value pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("stack underflow at byte " + std::to_string(op_pos_));
    }
    Value v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Value& top() {
    if (stack_.empty()) fail("stack underflow at byte " + std::to_string(op_pos_));
    return stack_.back();
  }
  std::vector<Value> pop_n(size_t n) {
    std::vector<Value> out(n);
    for (size_t k = n; k-- > 0;) out[k] = pop();
    return out;
  }
  std::vector<Value> pop_mark() {
    if (marks_.empty()) fail("no MARK before the opcode at byte " + std::to_string(op_pos_));
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value> out(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return out;
  }
  Value memo_get(uint64_t key) const {
    auto it = memo_.find(key);
    if (it == memo_.end()) {
      fail("memo entry " + std::to_string(key) + " read at byte " + std::to_string(op_pos_) +
           " was never stored");
    }
    return it->second;
  }

  static Value make_sequence(Kind kind, std::vector<Value> items) {
    auto v = make(kind);
    v->items = std::move(items);
    return v;
  }
  void append(const Value& target, const std::vector<Value>& items) {
    if (target->kind == Kind::kList) {
      target->items.insert(target->items.end(), items.begin(), items.end());
    } else if (target->kind != Kind::kObject) {
      fail("APPEND to " + describe(target) + " at byte " + std::to_string(op_pos_));
    }
  }
  void set_items(PyValue& dict, const std::vector<Value>& kv) {
    if (kv.size() % 2 != 0)
      fail("odd number of items for a dict at byte " + std::to_string(op_pos_));
    for (size_t k = 0; k < kv.size(); k += 2) dict_set(dict, kv[k], kv[k + 1]);
  }
  void set_target_items(const Value& target, const std::vector<Value>& kv) {
    if (target->kind == Kind::kDict) {
      set_items(*target, kv);
    } else if (target->kind != Kind::kObject) {  // e.g. a dict subclass: its items are not needed
      fail("SETITEM on " + describe(target) + " at byte " + std::to_string(op_pos_));
    }
  }

  Value construct(const Value& cls) {
    if (cls->kind == Kind::kGlobal && cls->s == "collections.OrderedDict") {
      auto dict = make(Kind::kDict);
      dict->ordered = true;
      return dict;
    }
    return make_text(Kind::kObject, cls->kind == Kind::kGlobal ? cls->s : "object");
  }

  Value call(const Value& callable, const Value& args) {
    if (callable->kind == Kind::kObject) return make_text(Kind::kObject, callable->s);
    if (callable->kind != Kind::kGlobal) {
      fail("REDUCE calls " + describe(callable) + " at byte " + std::to_string(op_pos_));
    }
    if (args->kind != Kind::kTuple) {
      fail("REDUCE arguments for " + callable->s + " are " + describe(args) +
           ", expected a tuple, at byte " + std::to_string(op_pos_));
    }
    const std::string& name = callable->s;
    const std::vector<Value>& a = args->items;
    if (name == "collections.OrderedDict" || name == "builtins.dict" ||
        name == "__builtin__.dict") {
      auto dict = make(Kind::kDict);
      dict->ordered = name == "collections.OrderedDict";
      if (!a.empty() && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple)) {
        for (const auto& pair : a[0]->items) {
          if (pair->kind != Kind::kTuple || pair->items.size() != 2) {
            fail(name + " built from " + describe(pair) + ", expected (key, value) pairs");
          }
          dict_set(*dict, pair->items[0], pair->items[1]);
        }
      }
      return dict;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4) fail(name + " with " + std::to_string(a.size()) + " arguments");
      auto t = make(Kind::kTensor);
      t->tensor = rebuild_tensor(name, a[0], a[1], a[2], a[3]);
      return t;
    }
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->kind != Kind::kTensor) {
        fail(name + " expects a tensor, found " + (a.empty() ? "no arguments" : describe(a[0])));
      }
      return a[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state)
      if (a.size() < 3) fail(name + " with " + std::to_string(a.size()) + " arguments");
      return call(a[0], a[2]);
    }
    if (name == "torch.Size" && a.size() == 1 && a[0]->kind == Kind::kTuple) return a[0];
    return make_text(Kind::kObject, name);
  }

  std::vector<int64_t> int_tuple(const std::string& what, const Value& v) const {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList) {
      fail("tensor " + what + " is " + describe(v) + ", expected a tuple of ints");
    }
    std::vector<int64_t> out;
    for (const auto& item : v->items) {
      if (item->kind != Kind::kInt || item->i < 0) {
        fail("tensor " + what + " holds " + describe(item) + ", expected non-negative ints");
      }
      out.push_back(item->i);
    }
    return out;
  }

  at::Tensor rebuild_tensor(const std::string& fn, const Value& storage, const Value& offset,
                            const Value& size, const Value& stride) {
    if (storage->kind != Kind::kStorage) {
      fail(fn + " expects a storage, found " + describe(storage) + " (byte " +
           std::to_string(op_pos_) + ")");
    }
    if (offset->kind != Kind::kInt || offset->i < 0) {
      fail(fn + ": storage offset is " + describe(offset) + ", expected a non-negative int");
    }
    const std::vector<int64_t> sizes = int_tuple("size", size);
    const std::vector<int64_t> strides = int_tuple("stride", stride);
    if (sizes.size() != strides.size()) {
      fail(fn + ": " + std::to_string(sizes.size()) + " sizes but " +
           std::to_string(strides.size()) + " strides");
    }
    const at::Tensor& elements = storage->tensor;
    for (const int64_t s : sizes) {
      if (s == 0) return at::empty(sizes, elements.options());
    }
    int64_t last = offset->i;  // index of the view's last element in the storage
    bool overflow = false;
    for (size_t d = 0; d < sizes.size(); ++d) {
      int64_t extent = 0;
      overflow = overflow || __builtin_mul_overflow(sizes[d] - 1, strides[d], &extent) ||
                 __builtin_add_overflow(last, extent, &last);
    }
    if (overflow || last >= elements.numel()) {
      fail(fn + ": a view at offset " + std::to_string(offset->i) + " with size " +
           c10::str(c10::IntArrayRef(sizes)) + " and stride " +
           c10::str(c10::IntArrayRef(strides)) + " reaches element " + std::to_string(last) +
           " of storage " + storage->s + ", which holds " + std::to_string(elements.numel()));
    }
    return elements.as_strided(sizes, strides, offset->i).clone(at::MemoryFormat::Contiguous);
  }

  // ('storage', torch.<T>Storage, key, location, numel): the elements are in `data/<key>`.
  Value persistent_load(const Value& pid) {
    const auto& p = pid->items;
    if (pid->kind != Kind::kTuple || p.size() != 5 || p[0]->kind != Kind::kString ||
        p[0]->s != "storage" || p[2]->kind != Kind::kString || p[4]->kind != Kind::kInt) {
      fail("persistent id at byte " + std::to_string(op_pos_) + " is " + describe(pid) +
           ", expected ('storage', type, key, location, numel)");
    }
    if (p[1]->kind != Kind::kGlobal) {
      fail("storage type is " + describe(p[1]) + ", expected a global such as torch.FloatStorage");
    }
    const auto dtype = storage_dtype(p[1]->s);
    if (!dtype) fail("unsupported storage type " + p[1]->s + " (quantized or unknown)");
    const std::string record = "data/" + p[2]->s;
    const std::string cache_key = record + "|" + p[1]->s;
    if (auto it = storages_.find(cache_key); it != storages_.end()) return it->second;

    const int64_t numel = p[4]->i;
    if (numel < 0) fail("storage " + record + " declares " + std::to_string(numel) + " elements");
    if (!reader_.hasRecord(record))
      fail("storage record " + record + " is missing from the archive");
    at::DataPtr bytes;
    size_t nbytes = 0;
    try {
      std::tie(bytes, nbytes) = reader_.getRecord(record);
    } catch (const c10::Error& e) {
      fail("cannot read storage record " + record + ": " + first_line(e.what_without_backtrace()));
    }
    const size_t element = c10::elementSize(*dtype);
    if (static_cast<uint64_t>(numel) > nbytes / element) {
      fail("truncated storage " + record + ": it holds " + std::to_string(nbytes) +
           " bytes, the pickle declares " + std::to_string(numel) + " elements of " + p[1]->s +
           " (" + std::to_string(element) + " bytes each)");
    }
    const size_t wanted = static_cast<size_t>(numel) * element;
    auto v = make(Kind::kStorage);
    v->s = record;
    v->tensor = at::empty({numel}, at::TensorOptions().dtype(*dtype));
    if (wanted > 0) std::memcpy(v->tensor.data_ptr(), bytes.get(), wanted);
    storages_.emplace(cache_key, v);
    return v;
  }

  std::string path_;
  caffe2::serialize::PyTorchStreamReader& reader_;
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  std::unordered_map<std::string, Value> storages_;
};

std::unique_ptr<caffe2::serialize::PyTorchStreamReader> open_zip(const std::string& path) {
  SETDET_CHECK(std::filesystem::is_regular_file(path), path, ": file not found");
  try {
    return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw Error(path + ": not a zip archive as torch.save writes it (PyTorch >= 1.6), or a " +
                "truncated one (" + first_line(e.what_without_backtrace()) +
                "); the legacy format of _use_new_zipfile_serialization=False is not supported");
  }
}

NamedTensors collect_state_dict(const std::string& path, const Value& top) {
  SETDET_CHECK(top->kind == Kind::kDict, path, ": the pickled object is ", describe(top),
               ", expected a dict of tensors (a state_dict) or a dict with a 'state_dict' or "
               "'model' entry holding one");
  Value chosen = top;
  std::string where = "the top-level dict";
  for (int depth = 0; depth < 4; ++depth) {
    const Value* next = nullptr;
    for (const char* key : {"state_dict", "model"}) {
      const Value* v = dict_find(*chosen, key);
      if (v != nullptr && (*v)->kind == Kind::kDict) {
        next = v;
        where += std::string("'s '") + key + "' entry";
        break;
      }
    }
    if (next == nullptr) break;
    chosen = *next;
  }

  size_t tensors = 0;
  for (const auto& kv : chosen->entries) tensors += kv.second->kind == Kind::kTensor;
  if (tensors == 0) {
    std::string keys;
    for (size_t k = 0; k < chosen->entries.size() && k < 10; ++k) {
      const auto& [key, value] = chosen->entries[k];
      keys += (k ? ", " : "") + (key->kind == Kind::kString ? "'" + key->s + "'" : describe(key)) +
              ": " + describe(value);
    }
    if (chosen->entries.size() > 10) keys += ", ...";
    throw Error(path + ": no dict of tensors found: " + where + " holds no tensors (" +
                (keys.empty() ? std::string("it is empty") : keys) +
                "); expected a state_dict, or a dict with a 'state_dict' or 'model' entry "
                "holding one");
  }
  NamedTensors out;
  out.reserve(chosen->entries.size());
  for (const auto& [key, value] : chosen->entries) {
    SETDET_CHECK(key->kind == Kind::kString, path, ": ", where, " has a key that is ",
                 describe(key), ", expected str names");
    SETDET_CHECK(value->kind == Kind::kTensor, path, ": entry '", key->s, "' of ", where, " is ",
                 describe(value), ", expected a tensor");
    out.emplace_back(key->s, value->tensor);
  }
  return out;
}

std::array<uint32_t, 256> crc32_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

}  // namespace

NamedTensors load_pth_state_dict(const std::string& path) {
  auto reader = open_zip(path);
  SETDET_CHECK(!reader->hasRecord("constants.pkl"), path,
               ": a TorchScript archive (torch.jit.save, or a setdet checkpoint), not a state_dict "
               "written by torch.save");
  SETDET_CHECK(reader->hasRecord("data.pkl"), path,
               ": the zip archive has no data.pkl record: not written by torch.save");
  if (reader->hasRecord("byteorder")) {
    auto [ptr, n] = reader->getRecord("byteorder");
    const std::string order(static_cast<const char*>(ptr.get()), n);
    SETDET_CHECK(order == "little", path, ": byteorder record says '", order,
                 "', only little-endian storages are supported");
  }
  at::DataPtr pickle;
  size_t size = 0;
  try {
    std::tie(pickle, size) = reader->getRecord("data.pkl");
  } catch (const c10::Error& e) {
    throw Error(path + ": cannot read data.pkl (" + first_line(e.what_without_backtrace()) + ")");
  }
  Unpickler unpickler(path, *reader, static_cast<const char*>(pickle.get()), size);
  return collect_state_dict(path, unpickler.run());
}

bool is_torchscript_archive(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    return reader.hasRecord("constants.pkl");
  } catch (const c10::Error&) {
    return false;
  }
}

uint32_t tensor_crc32(const at::Tensor& t) {
  static const std::array<uint32_t, 256> kTable = crc32_table();
  const at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t k = 0; k < n; ++k) crc = kTable[(crc ^ p[k]) & 0xFFu] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

}  // namespace setdet
