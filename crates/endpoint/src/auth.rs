//! Request authentication as the IC does it (interface specification, "Authentication"):
//! the sender is the anonymous principal with no key and no signature, or the
//! self-authenticating principal of `sender_pubkey`, whose key — or the last key of a chain of
//! delegations starting at it — signed `"\x0Aic-request" ‖ request id`. Ed25519 and ECDSA on
//! secp256k1 and P-256 (over SHA-256) keys, DER-encoded; delegations checked for signature,
//! expiry and target canisters; `ingress_expiry` within the accepted window.

use candid::Principal;
use ic_transport_types::{Envelope, EnvelopeContent, RequestId};

/// A request may expire at most this long after the endpoint's clock (the IC: 5 minutes, plus
/// a small drift).
pub const MAX_INGRESS_TTL_NS: u64 = 5 * 60 * 1_000_000_000 + 30 * 1_000_000_000;
/// Longest delegation chain accepted (the IC's limit).
pub const MAX_DELEGATIONS: usize = 20;
/// Most target canisters a delegation may name (the IC's limit).
pub const MAX_DELEGATION_TARGETS: usize = 1_000;

const REQUEST_DOMAIN: &[u8] = b"\x0Aic-request";

/// Why a request was refused before it reached a canister.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request expired at {expiry} ns (now {now} ns)")]
    Expired { expiry: u64, now: u64 },
    #[error("the request expires too far in the future ({expiry} ns; now {now} ns, at most 5 min ahead)")]
    TooFarAhead { expiry: u64, now: u64 },
    #[error("an anonymous request carries a public key or a signature")]
    AnonymousSigned,
    #[error("a signed request lacks sender_pubkey or sender_sig")]
    Unsigned,
    #[error("the sender {sender} is not the self-authenticating principal of sender_pubkey")]
    SenderMismatch { sender: Principal },
    #[error("unsupported public key: {0}")]
    BadKey(String),
    #[error("invalid signature")]
    BadSignature,
    #[error("delegation {index}: {reason}")]
    BadDelegation { index: usize, reason: String },
}

/// Checks the envelope; the caller it authenticates.
pub fn authenticate(
    env: &Envelope<'_>,
    request_id: &RequestId,
    now_ns: u64,
) -> Result<Principal, AuthError> {
    let content: &EnvelopeContent = &env.content;
    let expiry = content.ingress_expiry();
    if expiry < now_ns {
        return Err(AuthError::Expired {
            expiry,
            now: now_ns,
        });
    }
    if expiry > now_ns.saturating_add(MAX_INGRESS_TTL_NS) {
        return Err(AuthError::TooFarAhead {
            expiry,
            now: now_ns,
        });
    }
    let sender = *content.sender();
    if sender == Principal::anonymous() {
        if env.sender_pubkey.is_some()
            || env.sender_sig.is_some()
            || env.sender_delegation.is_some()
        {
            return Err(AuthError::AnonymousSigned);
        }
        return Ok(sender);
    }
    let (Some(pubkey), Some(sig)) = (&env.sender_pubkey, &env.sender_sig) else {
        return Err(AuthError::Unsigned);
    };
    if Principal::self_authenticating(pubkey) != sender {
        return Err(AuthError::SenderMismatch { sender });
    }
    let target = match content {
        EnvelopeContent::Call { canister_id, .. } | EnvelopeContent::Query { canister_id, .. } => {
            Some(*canister_id)
        }
        EnvelopeContent::ReadState { .. } => None,
    };
    let mut key = pubkey.clone();
    let chain = env.sender_delegation.as_deref().unwrap_or(&[]);
    if chain.len() > MAX_DELEGATIONS {
        return Err(AuthError::BadDelegation {
            index: chain.len(),
            reason: format!("more than {MAX_DELEGATIONS} delegations"),
        });
    }
    for (index, d) in chain.iter().enumerate() {
        let bad = |reason: String| AuthError::BadDelegation { index, reason };
        verify(&key, &d.delegation.signable(), &d.signature).map_err(|e| bad(e.to_string()))?;
        if d.delegation.expiration < now_ns {
            return Err(bad(format!("expired at {} ns", d.delegation.expiration)));
        }
        if let Some(targets) = &d.delegation.targets {
            if targets.len() > MAX_DELEGATION_TARGETS {
                return Err(bad(format!("more than {MAX_DELEGATION_TARGETS} targets")));
            }
            if let Some(t) = target {
                if !targets.contains(&t) {
                    return Err(bad(format!("does not allow canister {t}")));
                }
            }
        }
        key = d.delegation.pubkey.clone();
    }
    let mut msg = REQUEST_DOMAIN.to_vec();
    msg.extend_from_slice(request_id.as_slice());
    verify(&key, &msg, sig)?;
    Ok(sender)
}

/// Verifies `sig` over `msg` with a DER-encoded public key.
pub fn verify(der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), AuthError> {
    if let Ok(pk) = ic_ed25519::PublicKey::deserialize_rfc8410_der(der) {
        return pk
            .verify_signature(msg, sig)
            .map_err(|_| AuthError::BadSignature);
    }
    use k256::pkcs8::DecodePublicKey;
    use signature::Verifier;
    if let Ok(pk) = k256::ecdsa::VerifyingKey::from_public_key_der(der) {
        let s = k256::ecdsa::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
        return pk.verify(msg, &s).map_err(|_| AuthError::BadSignature);
    }
    if let Ok(pk) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        let s = p256::ecdsa::Signature::from_slice(sig).map_err(|_| AuthError::BadSignature)?;
        return pk.verify(msg, &s).map_err(|_| AuthError::BadSignature);
    }
    Err(AuthError::BadKey(
        "not an Ed25519, secp256k1 or P-256 key in DER (canister signatures are not supported)"
            .into(),
    ))
}
