//! `keyhaven admin import-keys`: JSON Lines of import items (IMPORT.md) into an
//! organization, with a progress bar on a terminal and a summary; exit 1 when any
//! line failed, naming each.

use std::io::{BufRead, IsTerminal};

use keyhaven_server::api::api_keys::import_line;
use keyhaven_server::api::error::ApiError;
use keyhaven_server::app::AppState;
use keyhaven_service::api_keys::OwnerRef;
use keyhaven_service::import::ImportItem;
use keyhaven_service::Caller;

/// Items sent to the use case at once (each is still its own transaction).
const BATCH: usize = 100;

/// What an import run did.
pub struct Summary {
    /// Keys imported (or, with `--dry-run`, that would be).
    pub imported: usize,
    /// `(line number, why)` of each line that failed.
    pub failed: Vec<(usize, String)>,
}

fn describe(e: ApiError) -> String {
    match e.info.param {
        Some(p) => format!("{} ({}: {})", e.info.message, e.info.code, p),
        None => format!("{} ({})", e.info.message, e.info.code),
    }
}

/// Reads `input` line by line and imports each item as `caller`; an item without an
/// owner gets `default_owner`.
pub async fn run(
    state: &AppState,
    caller: &Caller,
    input: Box<dyn BufRead>,
    default_owner: OwnerRef,
    dry_run: bool,
    total_hint: Option<u64>,
) -> anyhow::Result<Summary> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = match total_hint {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} keys {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut summary = Summary {
        imported: 0,
        failed: Vec::new(),
    };
    let mut batch: Vec<(usize, ImportItem)> = Vec::with_capacity(BATCH);
    for (i, line) in input.lines().enumerate() {
        let number = i + 1;
        let line = line.map_err(|e| anyhow::anyhow!("cannot read line {number}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match import_line(&line).map_err(describe) {
            Ok(mut item) => {
                if item.key.owner.is_none() {
                    item.key.owner = Some(default_owner.clone());
                }
                batch.push((number, item));
            }
            Err(why) => {
                summary.failed.push((number, why));
                bar.inc(1);
            }
        }
        if batch.len() == BATCH {
            flush(state, caller, &mut batch, dry_run, &mut summary, &bar).await?;
        }
    }
    flush(state, caller, &mut batch, dry_run, &mut summary, &bar).await?;
    bar.finish_and_clear();
    summary.failed.sort_by_key(|(n, _)| *n);
    Ok(summary)
}

async fn flush(
    state: &AppState,
    caller: &Caller,
    batch: &mut Vec<(usize, ImportItem)>,
    dry_run: bool,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let (lines, items): (Vec<usize>, Vec<ImportItem>) = batch.drain(..).unzip();
    let n = items.len() as u64;
    let report = state
        .service
        .import_api_keys(caller, items, dry_run)
        .await?;
    summary.imported += report.imported.len();
    for (i, e) in report.errors {
        let line = lines.get(i).copied().unwrap_or(0);
        summary.failed.push((line, describe(ApiError::from(e))));
    }
    bar.inc(n);
    Ok(())
}
