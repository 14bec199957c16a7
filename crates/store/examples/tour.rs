//! A short tour of the storage engine on an in-memory stable memory: SubDBs, ordered scans in
//! both directions with resume cursors, a hard cap, op-id retries and an export→import move.
//! This is what `flotilla`'s main job runs until the simulator demo exists.

use flotilla_store::{Config, OpCtx, Store};
use flotilla_types::{OpId, ScanArgs};
use ic_stable_structures::memory_manager::MemoryManager;
use ic_stable_structures::VectorMemory;
use serde_bytes::ByteBuf;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn main() {
    let mm = MemoryManager::init(VectorMemory::default());
    let mut store = Store::init(|id| mm.get(id), Config::default()).expect("fresh store");

    let posts = store.create_subdb(None, None, b"owner=alice").unwrap();
    let recent = store.create_subdb(None, Some(3), b"owner=alice").unwrap();
    println!("created SubDB {posts} (posts) and {recent} (recent, hard cap 3)");

    for (i, title) in ["anchor", "bridge", "compass", "dinghy", "ensign"]
        .iter()
        .enumerate()
    {
        let key = format!("post:{i:03}");
        store
            .put(None, posts, key.as_bytes(), title.as_bytes())
            .unwrap();
        let out = store
            .put(None, recent, key.as_bytes(), title.as_bytes())
            .unwrap();
        if out.evicted > 0 {
            println!(
                "put {key} into recent: evicted {} smallest key(s)",
                out.evicted
            );
        }
    }

    let mut args = ScanArgs {
        limit: Some(2),
        ..Default::default()
    };
    let mut page_no = 1;
    loop {
        let page = store.scan(posts, &args).unwrap();
        let keys: Vec<String> = page.entries.iter().map(|e| text(&e.key)).collect();
        println!("forward page {page_no}: {keys:?}");
        match page.next {
            Some(cursor) => args.cursor = Some(cursor),
            None => break,
        }
        page_no += 1;
    }
    let back = store
        .scan(
            posts,
            &ScanArgs {
                reverse: true,
                start: Some(ByteBuf::from(b"post:001".to_vec())),
                ..Default::default()
            },
        )
        .unwrap();
    let keys: Vec<String> = back.entries.iter().map(|e| text(&e.key)).collect();
    println!("reverse from the end down to post:001: {keys:?}");
    let recent_keys: Vec<String> = store
        .scan(recent, &ScanArgs::default())
        .unwrap()
        .entries
        .iter()
        .map(|e| text(&e.key))
        .collect();
    println!("recent keeps the 3 largest keys: {recent_keys:?}");

    let op = OpId::from(vec![42; 16]);
    let ctx = OpCtx {
        op_id: &op,
        salt: b"alice",
    };
    let first = store.put(Some(ctx), posts, b"post:005", b"flag").unwrap();
    let retry = store.put(Some(ctx), posts, b"post:005", b"flag").unwrap();
    let misuse = store.put(Some(ctx), posts, b"post:005", b"other");
    println!("op-id put: first {first:?}, retry {retry:?} (not applied again), same id with other args: {misuse:?}");

    let dst_mm = MemoryManager::init(VectorMemory::default());
    let mut dst = Store::init(|id| dst_mm.get(id), Config::default()).unwrap();
    let target = dst.begin_import();
    let (mut token, mut seq) = (None, 0);
    loop {
        let (chunk, next) = store
            .export_chunk(posts, seq, token.as_deref(), 64)
            .unwrap();
        dst.import_chunk(target, &chunk).unwrap();
        seq += 1;
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let stats = dst.finish_import(target).unwrap();
    println!(
        "moved posts in {seq} chunks of at most 64 bytes: {} items, {} bytes at the new home (source: {:?})",
        stats.items,
        stats.bytes,
        store.stats(posts).map(|s| (s.items, s.bytes))
    );
    let t = store.totals();
    println!(
        "totals: {} live SubDBs, {} items, {} bytes, {} op-log records",
        t.live_subdbs, t.items, t.bytes, t.op_records
    );
}
