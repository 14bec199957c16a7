//! The ic-agent transport: a program outside the IC (the `flotilla` CLI, a server, a test)
//! talks to a deployment over the IC's HTTP interface (feature `agent`).
//!
//! ```ignore
//! let network = Network::parse("local")?;                  // or "ic", or any URL
//! let identity = load_identity(Path::new("me.pem"))?;       // or anonymous()
//! let transport = AgentTransport::connect(&network, identity, AgentOptions::default()).await?;
//! let client = Client::new(transport, index_id);
//! ```
//!
//! - Networks: `ic` is mainnet (`https://icp-api.io`), `local` is icp-cli's local network
//!   (`http://127.0.0.1:8000`; dfx's listens on 4943: pass its URL), anything else is a URL.
//!   The root key is fetched from the network's status endpoint only for a network that is not
//!   mainnet; mainnet's is the one built into ic-agent. A network whose status names it
//!   `flotilla-demo` (the demo's endpoint, whose queries carry no node signatures) gets query
//!   signature verification turned off; it is off mainnet, where the root key itself comes
//!   from the same endpoint, so nothing is trusted that was not already.
//! - Identities: PEM files as icp-cli (`icp identity export`) and dfx write them — Ed25519
//!   (PKCS#8), secp256k1 and P-256 (SEC1 `EC PRIVATE KEY` or PKCS#8) — or the anonymous
//!   principal. An encrypted PEM is refused with a message saying how to export a plain one.
//! - Rejects keep their IC reject code, so the client's core retries exactly what the IC says
//!   may succeed later; a failure with no answer (network, timeout) is `RejectCode::Transport`,
//!   retried with the same op id like any unknown outcome. A reply that fails certificate
//!   verification is fatal: never retried, never trusted.
//! - Op ids come from a generator seeded by the operating system's random source.

use crate::core::{RejectCode, TransportError};
use crate::Transport;
use candid::Principal;
use ic_agent::agent::RejectResponse;
use ic_agent::identity::{AnonymousIdentity, BasicIdentity, Prime256v1Identity, Secp256k1Identity};
use ic_agent::{Agent, AgentError, Identity};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Mainnet's API boundary nodes.
pub const MAINNET_URL: &str = "https://icp-api.io";
/// icp-cli's local network (its implicit `local` network listens on port 8000).
pub const LOCAL_URL: &str = "http://127.0.0.1:8000";

/// How `flotilla demo`'s endpoint names itself in its status (`impl_version`).
pub const DEMO_IMPL_VERSION: &str = "flotilla-demo";

/// Where the deployment runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    url: String,
    mainnet: bool,
}

/// A `--network` that names no network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("network '{0}' is neither 'local', 'ic' nor an http:// or https:// URL")]
    NotANetwork(String),
    #[error("network URL '{0}' has no host")]
    NoHost(String),
}

impl Network {
    /// `ic`, `local`, or an `http://` / `https://` URL (a trailing `/` is dropped).
    pub fn parse(s: &str) -> Result<Network, NetworkError> {
        match s {
            "ic" => return Ok(Network::mainnet()),
            "local" => return Ok(Network::url(LOCAL_URL)),
            _ => {}
        }
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| NetworkError::NotANetwork(s.to_string()))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if hostname.is_empty() {
            return Err(NetworkError::NoHost(s.to_string()));
        }
        let url = s.trim_end_matches('/');
        let mainnet = matches!(
            hostname,
            "icp-api.io" | "ic0.app" | "icp0.io" | "icp-api.io." | "ic0.app." | "icp0.io."
        );
        Ok(Network {
            url: url.to_string(),
            mainnet,
        })
    }

    pub fn mainnet() -> Network {
        Network {
            url: MAINNET_URL.to_string(),
            mainnet: true,
        }
    }

    fn url(u: &str) -> Network {
        Network {
            url: u.to_string(),
            mainnet: false,
        }
    }

    /// The API's base URL.
    pub fn api_url(&self) -> &str {
        &self.url
    }

    /// Mainnet: its root key is built in and never fetched.
    pub fn is_mainnet(&self) -> bool {
        self.mainnet
    }
}

/// A PEM file that is not an identity this transport can use.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity file {path}: {error}")]
    Read { path: String, error: String },
    #[error(
        "identity file {0} is encrypted; export a plain PEM with `icp identity export NAME` \
         (or `dfx identity export NAME`)"
    )]
    Encrypted(String),
    #[error("identity file {0} holds no Ed25519, secp256k1 or P-256 private key in PEM form")]
    NotAKey(String),
}

/// The identity in a PEM file: Ed25519, secp256k1 or P-256, as icp-cli and dfx write them.
pub fn load_identity(path: &Path) -> Result<Box<dyn Identity>, IdentityError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| IdentityError::Read {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    identity_from_pem(&pem).map_err(|e| match e {
        IdentityError::Encrypted(_) => IdentityError::Encrypted(shown),
        _ => IdentityError::NotAKey(shown),
    })
}

/// [`load_identity`] on the bytes of a PEM file.
pub fn identity_from_pem(pem: &[u8]) -> Result<Box<dyn Identity>, IdentityError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("ENCRYPTED") {
        return Err(IdentityError::Encrypted("(PEM)".into()));
    }
    if let Ok(id) = BasicIdentity::from_pem(pem) {
        return Ok(Box::new(id));
    }
    if let Ok(id) = Secp256k1Identity::from_pem(pem) {
        return Ok(Box::new(id));
    }
    if let Ok(id) = Prime256v1Identity::from_pem(pem) {
        return Ok(Box::new(id));
    }
    Err(IdentityError::NotAKey("(PEM)".into()))
}

/// The anonymous principal's identity (unsigned requests).
pub fn anonymous() -> Box<dyn Identity> {
    Box::new(AnonymousIdentity)
}

/// Settings of [`AgentTransport::connect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentOptions {
    /// Check the node signatures on query replies (on for a real network; a network whose
    /// nodes do not sign queries, such as the demo's endpoint, needs it off).
    pub verify_query_signatures: bool,
    /// How long an update may take before it counts as a lost reply.
    pub update_timeout: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            verify_query_signatures: true,
            update_timeout: Duration::from_secs(120),
        }
    }
}

/// Calls over the IC's HTTP interface with ic-agent.
#[derive(Clone)]
pub struct AgentTransport {
    agent: Agent,
}

impl AgentTransport {
    /// An agent for `network` signing as `identity`; fetches the root key unless the network
    /// is mainnet.
    pub async fn connect(
        network: &Network,
        identity: Box<dyn Identity>,
        opts: AgentOptions,
    ) -> Result<AgentTransport, TransportError> {
        if network.is_mainnet() {
            return Ok(AgentTransport {
                agent: Self::build(network, identity, opts)?,
            });
        }
        // Off mainnet the root key comes from the network's status, which also says whether
        // the network is `flotilla demo`: its queries carry no node signatures.
        let probe = Self::build(network, anonymous(), opts)?;
        let status = probe.status().await.map_err(|e| {
            TransportError::new(
                RejectCode::Transport,
                format!("cannot reach {}: {e}", network.api_url()),
            )
        })?;
        let root_key = status.root_key.clone().ok_or_else(|| {
            TransportError::new(
                RejectCode::SysFatal,
                format!("{} gives no root key in its status", network.api_url()),
            )
        })?;
        let demo = status
            .impl_version
            .as_deref()
            .is_some_and(|v| v.starts_with(DEMO_IMPL_VERSION));
        let opts = AgentOptions {
            verify_query_signatures: opts.verify_query_signatures && !demo,
            ..opts
        };
        let agent = Self::build(network, identity, opts)?;
        agent.set_root_key(root_key);
        Ok(AgentTransport { agent })
    }

    /// The agent without any network traffic (no root key fetched yet).
    pub fn build(
        network: &Network,
        identity: Box<dyn Identity>,
        opts: AgentOptions,
    ) -> Result<Agent, TransportError> {
        Agent::builder()
            .with_url(network.api_url())
            .with_boxed_identity(identity)
            .with_verify_query_signatures(opts.verify_query_signatures)
            .with_max_polling_time(opts.update_timeout)
            .build()
            .map_err(|e| TransportError::new(RejectCode::SysFatal, e.to_string()))
    }

    /// The principal requests are signed as.
    pub fn principal(&self) -> Principal {
        self.agent
            .get_principal()
            .unwrap_or_else(|_| Principal::anonymous())
    }

    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}

fn reject(r: &RejectResponse) -> TransportError {
    TransportError::new(
        RejectCode::from_number(r.reject_code as u64),
        r.reject_message.clone(),
    )
}

/// The client's view of an agent failure.
pub fn map_agent_error(e: AgentError) -> TransportError {
    match &e {
        AgentError::CertifiedReject { reject: r, .. }
        | AgentError::UncertifiedReject { reject: r, .. } => reject(r),
        // No answer: the call may or may not have run.
        AgentError::TimeoutWaitingForResponse() | AgentError::TransportError(_) => {
            TransportError::new(RejectCode::Transport, e.to_string())
        }
        AgentError::HttpError(p) if p.status == 429 || p.status >= 500 => {
            TransportError::new(RejectCode::SysTransient, e.to_string())
        }
        // A bad request, a certificate that does not verify, a reply that does not parse:
        // nothing a retry can cure, and nothing to trust.
        _ => TransportError::new(RejectCode::SysFatal, e.to_string()),
    }
}

impl Transport for AgentTransport {
    fn query(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        let call = self.agent.query(&canister, method).with_arg(arg);
        async move { call.call().await.map_err(map_agent_error) }
    }

    fn update(
        &self,
        canister: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        let call = self.agent.update(&canister, method).with_arg(arg);
        async move { call.call_and_wait().await.map_err(map_agent_error) }
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(d)
    }

    async fn seed(&self) -> [u8; 32] {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).expect("the operating system's random source");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse() {
        let ic = Network::parse("ic").unwrap();
        assert!(ic.is_mainnet());
        assert_eq!(ic.api_url(), MAINNET_URL);
        let local = Network::parse("local").unwrap();
        assert!(!local.is_mainnet());
        assert_eq!(local.api_url(), "http://127.0.0.1:8000");
        let demo = Network::parse("http://127.0.0.1:4943/").unwrap();
        assert_eq!(demo.api_url(), "http://127.0.0.1:4943");
        assert!(!demo.is_mainnet());
        assert!(Network::parse("https://icp0.io").unwrap().is_mainnet());
        assert!(Network::parse("https://ic0.app:443/").unwrap().is_mainnet());
        assert!(!Network::parse("https://example.org").unwrap().is_mainnet());
        assert_eq!(
            Network::parse("mainnet"),
            Err(NetworkError::NotANetwork("mainnet".into()))
        );
        assert_eq!(
            Network::parse("ftp://x"),
            Err(NetworkError::NotANetwork("ftp://x".into()))
        );
        assert_eq!(
            Network::parse("http://:8000"),
            Err(NetworkError::NoHost("http://:8000".into()))
        );
    }

    #[test]
    fn agent_errors_keep_their_reject_code() {
        let r = |code: u64| {
            map_agent_error(AgentError::UncertifiedReject {
                reject: RejectResponse {
                    reject_code: ic_agent::agent::RejectCode::try_from(code).unwrap(),
                    reject_message: "m".into(),
                    error_code: None,
                },
                operation: None,
            })
        };
        assert_eq!(r(2).code, RejectCode::SysTransient);
        assert_eq!(r(3).code, RejectCode::DestinationInvalid);
        assert_eq!(r(4).code, RejectCode::CanisterReject);
        assert_eq!(r(5).code, RejectCode::CanisterError);
        assert!(r(5).retryable());
        assert!(!r(4).retryable());
        let t = map_agent_error(AgentError::TimeoutWaitingForResponse());
        assert_eq!(t.code, RejectCode::Transport);
        assert!(t.retryable());
        let busy = map_agent_error(AgentError::HttpError(
            ic_agent::agent_error::HttpErrorPayload {
                status: 503,
                content_type: None,
                content: vec![],
            },
        ));
        assert_eq!(busy.code, RejectCode::SysTransient);
        let bad = map_agent_error(AgentError::CertificateVerificationFailed());
        assert_eq!(bad.code, RejectCode::SysFatal);
        assert!(!bad.retryable());
    }

    #[test]
    fn encrypted_and_garbage_pems_are_refused() {
        let enc =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            identity_from_pem(enc),
            Err(IdentityError::Encrypted(_))
        ));
        assert!(matches!(
            identity_from_pem(b"hello"),
            Err(IdentityError::NotAKey(_))
        ));
        let missing = load_identity(Path::new("/nonexistent/flotilla.pem"));
        assert!(matches!(missing, Err(IdentityError::Read { .. })));
    }
}
