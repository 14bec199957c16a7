//! Module preparation: the testbed must save and restore a canister's globals (a trap rolls
//! them back) and call reply callbacks through the function table, but wasmtime only reaches
//! what a module exports. This pass adds an export for every global (`__testbed_global_N`)
//! and for table 0 (`__testbed_table`), leaving the code itself untouched.

use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

/// Export name of global `i`.
pub fn global_export(i: u32) -> String {
    format!("__testbed_global_{i}")
}

/// Export name of table 0.
pub const TABLE_EXPORT: &str = "__testbed_table";

/// What [`prepare`] found and added.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub wasm: Vec<u8>,
    /// Indices of the mutable globals (only these can change, so only these are saved).
    pub mutable_globals: Vec<u32>,
    pub has_table: bool,
}

/// Why a module could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("not a wasm module: {0}")]
    Parse(String),
    #[error("the module has no export section (a canister exports its methods)")]
    NoExports,
}

fn leb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn kind_byte(k: ExternalKind) -> u8 {
    match k {
        ExternalKind::Func => 0,
        ExternalKind::Table => 1,
        ExternalKind::Memory => 2,
        ExternalKind::Global => 3,
        ExternalKind::Tag => 4,
    }
}

fn read_leb(wasm: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *wasm.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Where the section whose payload begins at `payload_start` begins (its id byte).
fn section_start(wasm: &[u8], payload_start: usize) -> Option<usize> {
    let mut pos = 8;
    while pos < wasm.len() {
        let start = pos;
        pos += 1;
        let len = read_leb(wasm, &mut pos)? as usize;
        if pos == payload_start {
            return Some(start);
        }
        pos += len;
    }
    None
}

/// Adds the exports described in the module docs.
pub fn prepare(wasm: &[u8]) -> Result<Prepared, PrepareError> {
    let perr = |e: wasmparser::BinaryReaderError| PrepareError::Parse(e.to_string());
    let mut mutable_globals = Vec::new();
    let mut n_globals = 0u32;
    let mut tables = 0u32;
    let mut export_range = None;
    let mut exports: Vec<(String, u8, u32)> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(perr)? {
            Payload::ImportSection(r) => {
                for imp in r {
                    match imp.map_err(perr)?.ty {
                        TypeRef::Global(g) => {
                            if g.mutable {
                                mutable_globals.push(n_globals);
                            }
                            n_globals += 1;
                        }
                        TypeRef::Table(_) => tables += 1,
                        _ => {}
                    }
                }
            }
            Payload::TableSection(r) => tables += r.count(),
            Payload::GlobalSection(r) => {
                for g in r {
                    if g.map_err(perr)?.ty.mutable {
                        mutable_globals.push(n_globals);
                    }
                    n_globals += 1;
                }
            }
            Payload::ExportSection(r) => {
                export_range = Some(r.range());
                for e in r {
                    let e = e.map_err(perr)?;
                    exports.push((e.name.to_string(), kind_byte(e.kind), e.index));
                }
            }
            _ => {}
        }
    }
    let range = export_range.ok_or(PrepareError::NoExports)?;
    for &g in &mutable_globals {
        exports.push((global_export(g), 3, g));
    }
    if tables > 0 {
        exports.push((TABLE_EXPORT.to_string(), 1, 0));
    }
    let mut payload = Vec::new();
    leb(exports.len() as u64, &mut payload);
    for (name, kind, index) in &exports {
        leb(name.len() as u64, &mut payload);
        payload.extend_from_slice(name.as_bytes());
        payload.push(*kind);
        leb(u64::from(*index), &mut payload);
    }
    let header_start = section_start(wasm, range.start).ok_or(PrepareError::NoExports)?;
    let mut out = Vec::with_capacity(wasm.len() + payload.len());
    out.extend_from_slice(&wasm[..header_start]);
    out.push(7);
    leb(payload.len() as u64, &mut out);
    out.extend_from_slice(&payload);
    out.extend_from_slice(&wasm[range.end..]);
    Ok(Prepared {
        wasm: out,
        mutable_globals,
        has_table: tables > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_globals_and_table() {
        let wasm = wat::parse_str(
            r#"(module
                 (global $g (mut i32) (i32.const 7))
                 (global $c i32 (i32.const 1))
                 (global $h (mut i64) (i64.const 9))
                 (table 2 funcref)
                 (memory 1)
                 (func (export "f"))
                 (export "memory" (memory 0)))"#,
        )
        .unwrap();
        let p = prepare(&wasm).unwrap();
        assert_eq!(p.mutable_globals, vec![0, 2]);
        assert!(p.has_table);
        let names: Vec<String> = Parser::new(0)
            .parse_all(&p.wasm)
            .filter_map(|pl| match pl.unwrap() {
                Payload::ExportSection(r) => Some(
                    r.into_iter()
                        .map(|e| e.unwrap().name.to_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .next()
            .unwrap();
        assert_eq!(
            names,
            [
                "f",
                "memory",
                "__testbed_global_0",
                "__testbed_global_2",
                "__testbed_table"
            ]
        );
        let engine = wasmtime::Engine::default();
        wasmtime::Module::new(&engine, &p.wasm).unwrap();
    }
}
