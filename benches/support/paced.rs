//! Generated files written into a watched tree at an offered rate, for the benches that measure
//! the daemon while files arrive. Shared by the benches through `#[path]`.

use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `plan`'s files under `opencode` in order — at `rate` files/s when given, else as fast as
/// it can — calling `after_each` after every file. The pacing sleeps are the workload, not
/// synchronisation.
pub fn write_files<F: std::borrow::Borrow<ducktail_generator::GeneratedFile>>(
    opencode: &Path,
    plan: impl Iterator<Item = F>,
    rate: Option<u64>,
    mut after_each: impl FnMut(),
) {
    let started = Instant::now();
    for (index, file) in plan.enumerate() {
        let file = file.borrow();
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(index as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let path = opencode.join(&file.relative_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &file.contents).unwrap();
        after_each();
    }
}
