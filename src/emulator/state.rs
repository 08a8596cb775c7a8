//! The emulator's shared state: the current scenario, counters, quota book, image
//! cache, issued credentials, stored batches and the seeded RNG.
//!
//! Plain data behind locks; request handling lives in the route modules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use serde_json::Value;

use crate::emulator::auth::AuthStore;
use crate::emulator::control::quota::QuotaBook;
use crate::emulator::control::scenario::Scenario;
use crate::emulator::control::stats::StatsBook;
use crate::emulator::media::synth::ImageCache;

/// State shared by every handler.
pub type Shared = Arc<AppState>;

/// Budget of the encoded-image cache.
const IMAGE_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Everything the handlers share.
pub struct AppState {
    scenario: RwLock<Arc<Scenario>>,
    rng: Mutex<StdRng>,
    /// Address the emulator listens on (for `token_uri`).
    pub addr: SocketAddr,
    /// Request counters.
    pub stats: Arc<StatsBook>,
    /// Quota windows and concurrency slots.
    pub quota: Arc<QuotaBook>,
    /// Encoded images by key.
    pub images: ImageCache,
    /// Minted service accounts and issued tokens.
    pub auth: AuthStore,
    /// Stored batch jobs by id.
    pub batches: Mutex<HashMap<String, StoredBatch>>,
    /// Files API: stored files by id (`files/<id>`), and resumable uploads under way.
    pub files: Mutex<Files>,
}

/// The Files API's store.
#[derive(Debug, Default)]
pub struct Files {
    /// By id.
    pub stored: HashMap<String, StoredFile>,
    /// Upload id → (project, the file resource the upload started with, the bytes so
    /// far).
    pub uploads: HashMap<String, (String, Value, Vec<u8>)>,
}

/// One uploaded (or batch-written) file.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// Project that owns it.
    pub project: String,
    /// The `File` resource as answered.
    pub resource: Value,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A batch job as created.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    /// Project that created it.
    pub project: String,
    /// The job resource as answered at creation (Vertex) or the operation (Developer).
    pub resource: Value,
    /// Inline requests (Developer API) with their metadata.
    pub inline: Vec<(Value, Value)>,
    /// Model id as requested.
    pub model: String,
    /// API version of the create call.
    pub version: String,
    /// Set by `:cancel`.
    pub cancelled: bool,
    /// Creation time (unix ms): its state follows from the scenario's `[batch]` times.
    pub created_ms: u64,
    /// Its input file (`files/<id>`), for file input.
    pub input_file: Option<String>,
    /// Its output once it ended (computed once: every GET sees the same).
    pub output: Option<Value>,
}

impl AppState {
    /// Fresh state for a listener bound to `addr`.
    pub fn new(addr: SocketAddr, scenario: Scenario) -> Self {
        let rng = rng_for(&scenario);
        AppState {
            scenario: RwLock::new(Arc::new(scenario)),
            rng: Mutex::new(rng),
            addr,
            stats: Arc::new(StatsBook::default()),
            quota: Arc::new(QuotaBook::default()),
            images: ImageCache::new(IMAGE_CACHE_BYTES),
            auth: AuthStore::default(),
            batches: Mutex::new(HashMap::new()),
            files: Mutex::new(Files::default()),
        }
    }

    /// The current scenario.
    pub fn scenario(&self) -> Arc<Scenario> {
        self.scenario
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the scenario; a scenario with a `seed` reseeds the RNG.
    pub fn set_scenario(&self, scenario: Scenario) {
        if scenario.seed.is_some() {
            *self.rng_lock() = rng_for(&scenario);
        }
        *self.scenario.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(scenario);
    }

    /// A uniform sample in `[0, 1)` from the scenario RNG.
    pub fn unit(&self) -> f64 {
        self.rng_lock().random::<f64>()
    }

    /// A random 64-bit value from the scenario RNG (ids, tokens).
    pub fn random_u64(&self) -> u64 {
        self.rng_lock().random::<u64>()
    }

    fn rng_lock(&self) -> MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Base URL of this emulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Locks the Files API store.
    pub fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the batch store.
    pub fn batches(&self) -> MutexGuard<'_, HashMap<String, StoredBatch>> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn rng_for(scenario: &Scenario) -> StdRng {
    match scenario.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => rand::make_rng(),
    }
}
