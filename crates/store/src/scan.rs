//! Ordered scans of one SubDB, forward or backward, with a limit, a byte budget and a
//! resume cursor.

use crate::layout::scoped_key;
use crate::{check_key, item_cost, subdb_bounds, Store};
use flotilla_types::limits::{DEFAULT_SCAN_ITEMS, MAX_SCAN_ITEMS, REPLY_BUDGET_BYTES};
use flotilla_types::{Entry, ScanArgs, ScanError, ScanPage, SubDbId};
use ic_stable_structures::Memory;
use serde_bytes::ByteBuf;
use std::ops::Bound;

impl<M: Memory> Store<M> {
    /// One page of an ordered scan; see [`ScanArgs`] for the contract.
    pub fn scan(&self, id: SubDbId, args: &ScanArgs) -> Result<ScanPage, ScanError> {
        self.live_slot(id).ok_or(ScanError::UnknownSubDb)?;
        let limit = args.limit.unwrap_or(DEFAULT_SCAN_ITEMS);
        if limit == 0 || args.max_bytes == Some(0) {
            return Err(ScanError::ZeroLimit);
        }
        if limit > MAX_SCAN_ITEMS {
            return Err(ScanError::LimitTooLarge {
                requested: limit,
                max: MAX_SCAN_ITEMS,
            });
        }
        let budget = args
            .max_bytes
            .map_or(REPLY_BUDGET_BYTES, |b| (b as usize).min(REPLY_BUDGET_BYTES));
        for k in [&args.start, &args.end, &args.cursor].into_iter().flatten() {
            check_key(k, |len, max| ScanError::KeyTooLarge { len, max })?;
        }
        if let (Some(s), Some(e)) = (&args.start, &args.end) {
            if s > e {
                return Err(ScanError::InvalidRange);
            }
        }
        let (sub_lo, sub_hi) = subdb_bounds(id);
        let mut lo = match &args.start {
            Some(s) => Bound::Included(scoped_key(id, s)),
            None => sub_lo,
        };
        let mut hi = match &args.end {
            Some(e) => Bound::Excluded(scoped_key(id, e)),
            None => sub_hi,
        };
        if let Some(c) = &args.cursor {
            let in_range = args.start.as_ref().is_none_or(|s| c >= s)
                && args.end.as_ref().is_none_or(|e| c < e);
            if !in_range {
                return Err(ScanError::InvalidCursor);
            }
            let c = Bound::Excluded(scoped_key(id, c));
            if args.reverse {
                hi = c;
            } else {
                lo = c;
            }
        }
        let range = self.data.range((lo, hi));
        let iter: Box<dyn Iterator<Item = _>> = if args.reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut page = ScanPage::default();
        let mut used = 0usize;
        for e in iter {
            // Another item exists: stop here if the page is full, leaving a cursor.
            if page.entries.len() as u32 >= limit {
                page.next = page.entries.last().map(|l| l.key.clone());
                break;
            }
            let key = &e.key()[4..];
            let value = e.value();
            let cost = item_cost(key, &value);
            if !page.entries.is_empty() && used + cost > budget {
                page.next = page.entries.last().map(|l| l.key.clone());
                break;
            }
            used += cost;
            page.entries.push(Entry {
                key: ByteBuf::from(key.to_vec()),
                value: ByteBuf::from(value),
            });
        }
        Ok(page)
    }
}
