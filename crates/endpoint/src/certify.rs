//! Certificates as the IC issues them: a hash tree whose root hash is signed with BLS12-381
//! (a G1 signature over `"\x0Dic-state-root" ‖ root hash`, verified against a G2 root key), with
//! no delegation: the endpoint speaks as the root subnet.

use ic_certification::hash_tree::{empty, fork, label, leaf, HashTree};
use ic_certification::Certificate;
use ic_transport_types::RequestId;
use ic_verify_bls_signature::PrivateKey;
use sha2::{Digest, Sha256};

/// DER prefix of a BLS12-381 G2 public key as the IC encodes its root key (RFC 5480 framing
/// with the IC's algorithm and curve OIDs).
pub const ROOT_KEY_DER_PREFIX: [u8; 37] = [
    0x30, 0x81, 0x82, 0x30, 0x1d, 0x06, 0x0d, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05,
    0x03, 0x01, 0x02, 0x01, 0x06, 0x0c, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03,
    0x02, 0x01, 0x03, 0x61, 0x00,
];

const STATE_ROOT_DOMAIN: &[u8] = b"\x0Dic-state-root";

/// The endpoint's root key pair.
pub struct RootKey {
    key: PrivateKey,
    der: Vec<u8>,
}

impl RootKey {
    /// A key derived from a seed (the demo's seed: the same seed, the same root key).
    pub fn from_seed(seed: &[u8]) -> RootKey {
        let mut counter = 0u32;
        loop {
            let h: [u8; 32] = Sha256::new()
                .chain_update(b"flotilla-demo-root-key")
                .chain_update(seed)
                .chain_update(counter.to_le_bytes())
                .finalize()
                .into();
            if let Ok(key) = PrivateKey::deserialize(&h) {
                let mut der = ROOT_KEY_DER_PREFIX.to_vec();
                der.extend_from_slice(&key.public_key().serialize());
                return RootKey { key, der };
            }
            counter += 1;
        }
    }

    /// The public key, DER-encoded, as `/api/v2/status` serves it.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// A CBOR certificate of `tree`, signed.
    pub fn certify(&self, tree: HashTree<Vec<u8>>) -> Vec<u8> {
        let mut msg = STATE_ROOT_DOMAIN.to_vec();
        msg.extend_from_slice(&tree.digest());
        let signature = self.key.sign(&msg).serialize().to_vec();
        let cert = Certificate {
            tree,
            signature,
            delegation: None,
        };
        let mut out = vec![];
        ciborium::into_writer(&cert, &mut out).expect("a certificate encodes");
        out
    }
}

/// Where a request stands, as `request_status/<id>` certifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Received, not answered yet.
    Processing,
    Replied(Vec<u8>),
    Rejected {
        code: u64,
        message: String,
    },
}

fn leb128(mut n: u64) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn status_subtree(s: &Status) -> HashTree<Vec<u8>> {
    // Labels in a fork are in ascending order.
    match s {
        Status::Processing => label("status", leaf(b"processing".to_vec())),
        Status::Replied(arg) => fork(
            label("reply", leaf(arg.clone())),
            label("status", leaf(b"replied".to_vec())),
        ),
        Status::Rejected { code, message } => fork(
            fork(
                label("reject_code", leaf(leb128(*code))),
                label("reject_message", leaf(message.as_bytes().to_vec())),
            ),
            label("status", leaf(b"rejected".to_vec())),
        ),
    }
}

/// The tree of `time` and, for each request given, its `request_status` (request ids in
/// ascending order, as a tree requires).
pub fn state_tree(now_ns: u64, requests: &[(RequestId, Status)]) -> HashTree<Vec<u8>> {
    let mut sorted: Vec<_> = requests.iter().collect();
    sorted.sort_by(|a, b| a.0.as_slice().cmp(b.0.as_slice()));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let time = label("time", leaf(leb128(now_ns)));
    if sorted.is_empty() {
        return time;
    }
    let mut statuses = empty();
    for (i, (id, s)) in sorted.iter().enumerate() {
        let node = label(id.as_slice().to_vec(), status_subtree(s));
        statuses = if i == 0 { node } else { fork(statuses, node) };
    }
    fork(label("request_status", statuses), time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::hash_tree::{LookupResult, SubtreeLookupResult};

    #[test]
    fn leb128_matches_the_spec_examples() {
        assert_eq!(leb128(0), vec![0]);
        assert_eq!(leb128(127), vec![0x7f]);
        assert_eq!(leb128(624_485), vec![0xe5, 0x8e, 0x26]);
    }

    #[test]
    fn a_certificate_verifies_and_its_paths_resolve() {
        let k = RootKey::from_seed(b"1");
        assert_eq!(k.der().len(), 133);
        assert_eq!(RootKey::from_seed(b"1").der(), k.der());
        assert_ne!(RootKey::from_seed(b"2").der(), k.der());
        let a = RequestId::new(&[1u8; 32]);
        let b = RequestId::new(&[2u8; 32]);
        let tree = state_tree(
            5,
            &[
                (
                    b,
                    Status::Rejected {
                        code: 4,
                        message: "no".into(),
                    },
                ),
                (a, Status::Replied(b"yes".to_vec())),
            ],
        );
        let path = |id: &RequestId, l: &str| {
            vec![
                b"request_status".to_vec(),
                id.as_slice().to_vec(),
                l.as_bytes().to_vec(),
            ]
        };
        assert_eq!(
            tree.lookup_path(path(&a, "reply")),
            LookupResult::Found(&b"yes"[..])
        );
        assert_eq!(
            tree.lookup_path(path(&a, "status")),
            LookupResult::Found(&b"replied"[..])
        );
        assert_eq!(
            tree.lookup_path(path(&b, "reject_code")),
            LookupResult::Found(&[4u8][..])
        );
        assert_eq!(
            tree.lookup_path(&[b"time".to_vec()]),
            LookupResult::Found(&[5u8][..])
        );
        assert!(matches!(
            tree.lookup_subtree(&[b"nope".to_vec()]),
            SubtreeLookupResult::Absent
        ));
        let cert = k.certify(tree.clone());
        let back: Certificate = serde_cbor::from_slice(&cert).unwrap();
        assert_eq!(back.tree.digest(), tree.digest());
        let mut msg = STATE_ROOT_DOMAIN.to_vec();
        msg.extend_from_slice(&tree.digest());
        ic_verify_bls_signature::verify_bls_signature(&back.signature, &msg, &k.der()[37..])
            .expect("the signature verifies");
        let mut forged = msg.clone();
        forged[20] ^= 1;
        assert!(ic_verify_bls_signature::verify_bls_signature(
            &back.signature,
            &forged,
            &k.der()[37..]
        )
        .is_err());
    }
}
