//! The operations a client performs: which canister method each calls, how its argument is
//! built from a route, and how each error it can answer is classified for the retry policy.

use crate::core::CallKind;
use candid::{CandidType, Principal};
use flotilla_types::dispatch::{decode_args, encode_args};
use flotilla_types::index::{
    CreateError, CreateRequest, DeleteRequest, DeleteSubDbRequestError, FleetUpgradeInfo,
    IndexStats, RoutesPage, RoutesRequest, UpgradePartitionsArgs, UpgradePartitionsError,
    UploadProgress, UploadWasmError, WasmChunk,
};
use flotilla_types::partition::{
    BatchArgs, DeleteArgs, GetArgs, GetManyArgs, GetManyError, GetManyReply, PutArgs, ScanRequest,
    SetAccessArgs, SetAccessError, SubDbStatsError,
};
use flotilla_types::{
    BatchError, BatchOp, BatchOutcome, DeleteError, DeleteSubDbError, GetError, InnerKey, OpId,
    PutError, PutOutcome, ScanArgs, ScanError, ScanPage, SubDbStats,
};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use std::fmt::{Debug, Display};

/// Where an operation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// The index canister.
    Index,
    /// The partition holding the SubDB with this outer key.
    SubDb(&'a str),
    /// One canister, whatever SubDBs the call names (a partition's `get_many`).
    Canister(Principal),
}

/// How the retry policy treats an error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The operation's answer: report it.
    Final,
    /// Clears by itself: retry after a backoff.
    Transient,
    /// The SubDB lives elsewhere now: go there.
    Moved(InnerKey),
    /// The partition does not know the SubDB: refresh the route.
    Unknown,
}

/// An error enum of an operation, classified for the policy.
pub trait Classify: Debug + Display {
    fn class(&self) -> Class;
    /// The enum's "no such SubDB" answer.
    fn unknown() -> Self;
}

macro_rules! subdb_error {
    ($t:ty; transient: $($tr:pat),*) => {
        impl Classify for $t {
            fn class(&self) -> Class {
                match self {
                    Self::Moved { to } => Class::Moved(*to),
                    Self::UnknownSubDb => Class::Unknown,
                    $($tr => Class::Transient,)*
                    #[allow(unreachable_patterns)]
                    _ => Class::Final,
                }
            }
            fn unknown() -> Self {
                Self::UnknownSubDb
            }
        }
    };
}

subdb_error!(PutError; transient: PutError::WritesPaused);
subdb_error!(DeleteError; transient: DeleteError::WritesPaused);
subdb_error!(SetAccessError; transient: SetAccessError::WritesPaused);
subdb_error!(GetError; transient: );
subdb_error!(ScanError; transient: );
subdb_error!(SubDbStatsError; transient: );
subdb_error!(BatchError; transient: BatchError::WritesPaused);

impl Classify for GetManyError {
    fn class(&self) -> Class {
        Class::Final
    }
    fn unknown() -> Self {
        GetManyError::TooManyKeys { len: 0, max: 0 }
    }
}

impl Classify for CreateError {
    fn class(&self) -> Class {
        match self {
            CreateError::InProgress
            | CreateError::NoCapacity
            | CreateError::PartitionUnavailable { .. } => Class::Transient,
            _ => Class::Final,
        }
    }
    fn unknown() -> Self {
        CreateError::NoCapacity
    }
}

impl Classify for DeleteSubDbRequestError {
    fn class(&self) -> Class {
        match self {
            DeleteSubDbRequestError::InProgress
            | DeleteSubDbRequestError::PartitionUnavailable { .. }
            | DeleteSubDbRequestError::Partition(
                DeleteSubDbError::WritesPaused | DeleteSubDbError::Moved { .. },
            ) => Class::Transient,
            _ => Class::Final,
        }
    }
    fn unknown() -> Self {
        DeleteSubDbRequestError::UnknownOuterKey
    }
}

/// The error of calls that cannot fail with a typed answer (the index's `routes` and
/// `stats`): never constructed.
#[derive(CandidType, serde::Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no error")]
pub struct Never(());

impl Classify for Never {
    fn class(&self) -> Class {
        Class::Final
    }
    fn unknown() -> Self {
        Never(())
    }
}

/// One operation: its method, target, argument and reply types.
pub trait Operation {
    type Ok: CandidType + DeserializeOwned;
    type Err: Classify + CandidType + DeserializeOwned;
    const METHOD: &'static str;
    const KIND: CallKind;
    fn target(&self) -> Target<'_>;
    /// The Candid argument, addressed to `at` (the SubDB's inner key, `None` for the index).
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8>;
    /// The reply: most methods return `Result<Ok, Err>`.
    fn decode(bytes: &[u8]) -> Result<Result<Self::Ok, Self::Err>, String> {
        decode_args::<(Result<Self::Ok, Self::Err>,)>(Self::METHOD, bytes)
            .map(|(r,)| r)
            .map_err(|e| e.to_string())
    }
}

fn subdb(at: Option<InnerKey>) -> u32 {
    at.expect("SubDB operations are sent with a route").subdb
}

/// `create_subdb` at the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateSubDb(pub CreateRequest);

impl Operation for CreateSubDb {
    type Ok = InnerKey;
    type Err = CreateError;
    const METHOD: &'static str = "create_subdb";
    const KIND: CallKind = CallKind::Update;
    fn target(&self) -> Target<'_> {
        Target::Index
    }
    fn encode(&self, _: Option<InnerKey>) -> Vec<u8> {
        encode_args((&self.0,))
    }
}

/// `delete_subdb` at the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropSubDb(pub DeleteRequest);

impl Operation for DropSubDb {
    type Ok = ();
    type Err = DeleteSubDbRequestError;
    const METHOD: &'static str = "delete_subdb";
    const KIND: CallKind = CallKind::Update;
    fn target(&self) -> Target<'_> {
        Target::Index
    }
    fn encode(&self, _: Option<InnerKey>) -> Vec<u8> {
        encode_args((&self.0,))
    }
}

/// The index's `routes` page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes(pub RoutesRequest);

/// The index's `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexStatsOp;

/// `put` of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put {
    pub outer: String,
    pub key: ByteBuf,
    pub value: ByteBuf,
    pub op_id: OpId,
}

impl Operation for Put {
    type Ok = PutOutcome;
    type Err = PutError;
    const METHOD: &'static str = "put";
    const KIND: CallKind = CallKind::Update;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((PutArgs {
            subdb: subdb(at),
            key: self.key.clone(),
            value: self.value.clone(),
            op_id: self.op_id.clone(),
        },))
    }
}

/// `delete` of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub outer: String,
    pub key: ByteBuf,
    pub op_id: OpId,
}

impl Operation for Delete {
    type Ok = bool;
    type Err = DeleteError;
    const METHOD: &'static str = "delete";
    const KIND: CallKind = CallKind::Update;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((DeleteArgs {
            subdb: subdb(at),
            key: self.key.clone(),
            op_id: self.op_id.clone(),
        },))
    }
}

/// `get` of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Get {
    pub outer: String,
    pub key: ByteBuf,
}

impl Operation for Get {
    type Ok = Option<ByteBuf>;
    type Err = GetError;
    const METHOD: &'static str = "get";
    const KIND: CallKind = CallKind::Query;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((GetArgs {
            subdb: subdb(at),
            key: self.key.clone(),
        },))
    }
}

/// `has` of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Has(pub Get);

impl Operation for Has {
    type Ok = bool;
    type Err = GetError;
    const METHOD: &'static str = "has";
    const KIND: CallKind = CallKind::Query;
    fn target(&self) -> Target<'_> {
        self.0.target()
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        self.0.encode(at)
    }
}

/// One page of a scan; `args.cursor` is where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPageOp {
    pub outer: String,
    pub args: ScanArgs,
}

impl Operation for ScanPageOp {
    type Ok = ScanPage;
    type Err = ScanError;
    const METHOD: &'static str = "scan";
    const KIND: CallKind = CallKind::Query;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((ScanRequest {
            subdb: subdb(at),
            args: self.args.clone(),
        },))
    }
}

/// `subdb_stats` of one SubDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub outer: String,
}

impl Operation for Stats {
    type Ok = SubDbStats;
    type Err = SubDbStatsError;
    const METHOD: &'static str = "subdb_stats";
    const KIND: CallKind = CallKind::Query;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((subdb(at),))
    }
}

/// `set_access` of one SubDB (its owner only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAccess {
    pub outer: String,
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

impl Operation for SetAccess {
    type Ok = ();
    type Err = SetAccessError;
    const METHOD: &'static str = "set_access";
    const KIND: CallKind = CallKind::Update;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((SetAccessArgs {
            subdb: subdb(at),
            readers: self.readers.clone(),
            writers: self.writers.clone(),
        },))
    }
}

/// `batch`: many puts and deletes on one SubDB in one message, atomically, under one op id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub outer: String,
    pub ops: Vec<BatchOp>,
    pub op_id: OpId,
}

impl Operation for Batch {
    type Ok = BatchOutcome;
    type Err = BatchError;
    const METHOD: &'static str = "batch";
    const KIND: CallKind = CallKind::Update;
    fn target(&self) -> Target<'_> {
        Target::SubDb(&self.outer)
    }
    fn encode(&self, at: Option<InnerKey>) -> Vec<u8> {
        encode_args((BatchArgs {
            subdb: subdb(at),
            ops: self.ops.clone(),
            op_id: self.op_id.clone(),
        },))
    }
}

/// `get_many` at one partition: many (SubDB, key) pairs in one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetMany {
    pub partition: Principal,
    pub keys: Vec<GetArgs>,
}

impl Operation for GetMany {
    type Ok = GetManyReply;
    type Err = GetManyError;
    const METHOD: &'static str = "get_many";
    const KIND: CallKind = CallKind::Query;
    fn target(&self) -> Target<'_> {
        Target::Canister(self.partition)
    }
    fn encode(&self, _: Option<InnerKey>) -> Vec<u8> {
        encode_args((GetManyArgs {
            keys: self.keys.clone(),
        },))
    }
}

/// Index queries whose reply is a plain value, not a `Result`.
macro_rules! plain_index_query {
    ($t:ty, $reply:ty, $method:literal, |$s:ident| $arg:expr) => {
        impl Operation for $t {
            type Ok = $reply;
            type Err = Never;
            const METHOD: &'static str = $method;
            const KIND: CallKind = CallKind::Query;
            fn target(&self) -> Target<'_> {
                Target::Index
            }
            fn encode(&self, _: Option<InnerKey>) -> Vec<u8> {
                let $s = self;
                $arg
            }
            fn decode(bytes: &[u8]) -> Result<Result<Self::Ok, Self::Err>, String> {
                decode_args::<($reply,)>(Self::METHOD, bytes)
                    .map(|(r,)| Ok(r))
                    .map_err(|e| e.to_string())
            }
        }
    };
}

plain_index_query!(Routes, RoutesPage, "routes", |s| encode_args((&s.0,)));
plain_index_query!(IndexStatsOp, IndexStats, "stats", |_s| encode_args(()));

/// An admin's update call to the index whose every error is final (the caller decides what a
/// retried call's answer means).
macro_rules! admin_update {
    ($t:ty, $ok:ty, $err:ty, $method:literal) => {
        impl Operation for $t {
            type Ok = $ok;
            type Err = $err;
            const METHOD: &'static str = $method;
            const KIND: CallKind = CallKind::Update;
            fn target(&self) -> Target<'_> {
                Target::Index
            }
            fn encode(&self, _: Option<InnerKey>) -> Vec<u8> {
                encode_args((&self.0,))
            }
        }

        impl Classify for $err {
            fn class(&self) -> Class {
                Class::Final
            }
            fn unknown() -> Self {
                Self::NotAuthorized
            }
        }
    };
}

/// `upload_partition_wasm_chunk` at the index (admins). A retry after a lost reply whose chunk
/// was applied answers `OutOfOrder { expected }` past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadWasmChunk(pub WasmChunk);
admin_update!(
    UploadWasmChunk,
    UploadProgress,
    UploadWasmError,
    "upload_partition_wasm_chunk"
);

/// `upgrade_partitions` at the index (admins). A retry after a lost reply answers
/// `AlreadyRunning`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradePartitions(pub UpgradePartitionsArgs);
admin_update!(
    UpgradePartitions,
    FleetUpgradeInfo,
    UpgradePartitionsError,
    "upgrade_partitions"
);
