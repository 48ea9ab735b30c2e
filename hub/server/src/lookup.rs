//! Case lookups shared by gRPC and HTTP: read the projection, then compute
//! the status and SLA clocks at the moment of the lookup. The projection
//! itself holds no "now"; only this edge reads the clock.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mpp_core::calendar::CalendarSet;
use mpp_core::sla::{case_sla, case_status_at, SlaView};
use mpp_core::{Case, CaseStatus, RegionCode, TrackingNumber};
use mpp_store::{SledStore, Store};
use tracing::{error, info, warn};

use crate::error::ApiError;

/// Most calendar files read at start (regions × years).
pub const CALENDAR_FILES_MAX: usize = 4096;

/// Largest calendar file read, in bytes.
pub const CALENDAR_FILE_BYTES_MAX: u64 = 64 * 1024;

/// A case as a citizen sees it at one moment.
#[derive(Debug, Clone)]
pub struct Found {
    /// The projection.
    pub case: Case,
    /// Status at the moment of the lookup (overdue included).
    pub status: CaseStatus,
    /// SLA clock of each application, in application order.
    pub slas: Vec<SlaView>,
}

/// Where "now" comes from: the system clock in production, a fixed or
/// stepped value in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock, Unix milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
}

/// Reads cases from the store and dresses them for citizens.
#[derive(Clone)]
pub struct Lookups {
    store: SledStore,
    calendars: Arc<CalendarSet>,
    clock: Clock,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Lookups {
    /// Lookups over `store` with the given calendars and clock.
    pub fn new(store: SledStore, calendars: Arc<CalendarSet>, clock: Clock) -> Self {
        Self { store, calendars, clock }
    }

    /// The store.
    pub fn store(&self) -> &SledStore {
        &self.store
    }

    /// Looks a case up by its tracking number text.
    pub fn get(&self, tracking_number: &str) -> Result<Found, ApiError> {
        let id = TrackingNumber::parse(tracking_number.trim())?;
        let case = match self.store.case(&id) {
            Ok(Some(case)) => case,
            Ok(None) => return Err(ApiError::case_not_found()),
            Err(e) => {
                error!(error = %e, "Case lookup failed in the store");
                return Err(ApiError::internal());
            }
        };
        let now_ms = (self.clock)();
        let status = case_status_at(&case, &self.calendars, now_ms);
        let slas = case_sla(&case, &self.calendars, now_ms);
        Ok(Found { case, status, slas })
    }
}

/// Loads every `<dir>/<region>/<year>.txt` calendar file. A missing `dir`
/// is an error: the operator asked for it.
pub fn load_calendars(dir: &Path) -> anyhow::Result<CalendarSet> {
    let mut set = CalendarSet::new();
    let mut files = 0usize;
    let mut regions: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading calendars dir {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    regions.sort_by_key(|e| e.file_name());
    for region_dir in regions {
        if !region_dir.file_type()?.is_dir() {
            continue;
        }
        let name = region_dir.file_name().to_string_lossy().into_owned();
        let Ok(region) = RegionCode::parse(&name) else {
            warn!(dir = %region_dir.path().display(), "Skipping a calendar directory not named by a region code");
            continue;
        };
        let mut years: Vec<_> = std::fs::read_dir(region_dir.path())?.collect::<Result<_, _>>()?;
        years.sort_by_key(|e| e.file_name());
        for year in years {
            let path = year.path();
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            files += 1;
            anyhow::ensure!(files <= CALENDAR_FILES_MAX, "more than {CALENDAR_FILES_MAX} calendar files");
            let len = year.metadata()?.len();
            anyhow::ensure!(
                len <= CALENDAR_FILE_BYTES_MAX,
                "{} is larger than {CALENDAR_FILE_BYTES_MAX} bytes",
                path.display()
            );
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            set.insert_text(region, &text).with_context(|| format!("in {}", path.display()))?;
        }
    }
    info!(dir = %dir.display(), files, "Calendars loaded");
    Ok(set)
}
