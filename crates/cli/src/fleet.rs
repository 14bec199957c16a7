//! The admin commands of fleet care: `flotilla upload-wasm FILE` (a partition module, in
//! chunks, with a progress bar) and `flotilla upgrade` (every partition to it, a batch at a
//! time, followed to its end). Written over any `Transport`, like the data commands.

use crate::data::{fail, io, progress_bar, Output};
use crate::Failure;
use flotilla_client::{Client, Error, Transport};
use flotilla_types::index::{
    FleetUpgradeInfo, UpgradePartitionsArgs, UpgradePartitionsError, UploadWasmError, WasmChunk,
};
use flotilla_types::limits::MAX_WASM_UPLOAD_CHUNK_BYTES;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How often `flotilla upgrade` asks the index how far the fleet upgrade is.
pub const UPGRADE_POLL: Duration = Duration::from_secs(1);

/// Uploads the module in `file` to the index in chunks of `MAX_WASM_UPLOAD_CHUNK_BYTES`.
/// A chunk whose reply was lost and whose retry the index answers `OutOfOrder` continues
/// from where the index is.
pub async fn upload_wasm<T: Transport>(
    client: &Client<T>,
    file: &Path,
    output: Output,
    out: &mut dyn Write,
    progress: bool,
) -> Result<(), Failure> {
    let wasm =
        std::fs::read(file).map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    if wasm.is_empty() {
        return Err(Failure(format!("{} is empty", file.display())));
    }
    let sha256 = ByteBuf::from(Sha256::digest(&wasm).to_vec());
    let total = wasm.len();
    let b = progress_bar(
        progress,
        total as u64,
        "upload-wasm [{bar:40}] {bytes}/{total_bytes} ({eta})",
    )?;
    let mut offset = 0usize;
    // Each chunk once, plus a few restarts after lost replies.
    let budget = 4 * total.div_ceil(MAX_WASM_UPLOAD_CHUNK_BYTES) + 8;
    for _ in 0..budget {
        let end = (offset + MAX_WASM_UPLOAD_CHUNK_BYTES).min(total);
        let chunk = WasmChunk {
            offset: offset as u64,
            bytes: ByteBuf::from(wasm[offset..end].to_vec()),
            total_len: total as u64,
            sha256: sha256.clone(),
        };
        match client.upload_wasm_chunk(chunk).await {
            Ok(p) if p.complete => {
                b.finish_and_clear();
                let sha = hex::encode(&sha256);
                return if output == Output::Json {
                    let v = serde_json::json!({"bytes": total, "sha256": sha});
                    writeln!(out, "{v}").map_err(io)
                } else {
                    writeln!(
                        out,
                        "uploaded {total} bytes, sha256 {sha}: new partitions get this module; \
                         `flotilla upgrade` rolls it out to the others"
                    )
                    .map_err(io)
                };
            }
            Ok(p) => offset = p.received as usize,
            Err(Error::Refused(UploadWasmError::OutOfOrder { expected, .. }))
                if (expected as usize) < total =>
            {
                offset = expected as usize
            }
            Err(e) => {
                b.abandon();
                return Err(fail("upload-wasm", e));
            }
        }
        b.set_position(offset as u64);
    }
    Err(Failure(format!(
        "upload-wasm: the index kept asking for other offsets (is another upload running?); \
         {offset} of {total} bytes are in"
    )))
}

/// Starts a fleet upgrade (or follows the one running) and, unless `no_wait`, waits for its
/// end with a progress bar. Fails (after printing them) if partitions were left on their old
/// module.
pub async fn upgrade<T: Transport>(
    client: &Client<T>,
    batch: Option<u32>,
    no_wait: bool,
    output: Output,
    out: &mut dyn Write,
    progress: bool,
) -> Result<(), Failure> {
    let started = match client
        .upgrade_partitions(UpgradePartitionsArgs { batch })
        .await
    {
        Ok(info) => info,
        // Running already: started earlier, or this very call's reply was lost.
        Err(Error::Refused(UpgradePartitionsError::AlreadyRunning)) => current(client).await?,
        Err(e) => return Err(fail("upgrade", e)),
    };
    let mut info = started;
    if !no_wait {
        let b = progress_bar(
            progress,
            parts(&info),
            "upgrade [{bar:40}] {pos}/{len} partitions {msg}",
        )?;
        while info.finished_at.is_none() {
            b.set_length(parts(&info));
            b.set_position(info.upgraded + info.failed_total);
            let steps: Vec<String> = info.in_progress.iter().map(|u| u.step.clone()).collect();
            b.set_message(format!("(now: {})", steps.join(", ")));
            client.transport().sleep(UPGRADE_POLL).await;
            info = current(client).await?;
        }
        b.finish_and_clear();
    }
    if output == Output::Json {
        let v = serde_json::to_value(&info).map_err(|e| Failure(e.to_string()))?;
        writeln!(out, "{v}").map_err(io)?;
    } else {
        write!(out, "{}", upgrade_text(&info)).map_err(io)?;
    }
    if info.finished_at.is_some() && info.failed_total > 0 {
        return Err(Failure(format!(
            "{} partition(s) kept their old module (listed above); fix the module and run \
             `flotilla upgrade` again",
            info.failed_total
        )));
    }
    Ok(())
}

async fn current<T: Transport>(client: &Client<T>) -> Result<FleetUpgradeInfo, Failure> {
    let s = client.index_stats().await.map_err(|e| fail("stats", e))?;
    s.fleet_upgrade
        .ok_or_else(|| Failure("the index shows no fleet upgrade".into()))
}

fn parts(u: &FleetUpgradeInfo) -> u64 {
    u.upgraded + u.failed_total + u.waiting + u.in_progress.len() as u64
}

/// A fleet upgrade as text: its module, where it stands, and each failure.
pub fn upgrade_text(u: &FleetUpgradeInfo) -> String {
    let sha = hex::encode(&u.module);
    let mut s = match u.finished_at {
        Some(_) => format!(
            "fleet upgrade to {}… ended: {} upgraded, {} failed\n",
            &sha[..16],
            u.upgraded,
            u.failed_total
        ),
        None => format!(
            "fleet upgrade to {}… running (batch {}): {} upgraded, {} in progress, {} waiting, \
             {} failed\n",
            &sha[..16],
            u.batch,
            u.upgraded,
            u.in_progress.len(),
            u.waiting,
            u.failed_total
        ),
    };
    for f in &u.failed {
        s.push_str(&format!(
            "  failed: {} at {}: {}\n",
            f.partition, f.step, f.message
        ));
    }
    if (u.failed.len() as u64) < u.failed_total {
        s.push_str(&format!(
            "  ... and {} more\n",
            u.failed_total - u.failed.len() as u64
        ));
    }
    s
}
