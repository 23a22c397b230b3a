//! `pipewright import`: events from a file, in committed batches, with a progress bar and a
//! summary. One bad line never aborts the rest: it is reported with its line number and skipped.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use domain::NewEvent;
use store::{Ingested, Store};
use wire::Problem;

#[derive(Debug, Default)]
pub struct Summary {
    pub imported: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub problems: Vec<Problem>,
}

/// At most this many rejected lines are listed; the count covers all of them.
const LISTED: usize = 100;

impl Summary {
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "imported {}, duplicates {}, rejected {}",
            self.imported, self.duplicates, self.rejected
        )?;
        for p in self.problems.iter().take(LISTED) {
            writeln!(out, "  rejected {p}")?;
        }
        if self.rejected > LISTED {
            writeln!(
                out,
                "  … and {} more rejected lines",
                self.rejected - LISTED
            )?;
        }
        Ok(())
    }

    fn reject(&mut self, p: Problem) {
        self.rejected += 1;
        if self.problems.len() < LISTED {
            self.problems.push(p);
        }
    }

    async fn flush(&mut self, store: &dyn Store, batch: &mut Vec<NewEvent>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let results = store
            .ingest(std::mem::take(batch))
            .await
            .context("cannot store events")?;
        for r in results {
            match r {
                Ingested::Stored { .. } => self.imported += 1,
                Ingested::Duplicate { .. } => self.duplicates += 1,
            }
        }
        Ok(())
    }
}

/// A progress bar on standard error (hidden when it is not a terminal), counting bytes of a
/// file or rows of a parsed text.
pub fn progress(total: u64, bytes: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let template = if bytes {
        "{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)"
    } else {
        "{bar:40} {pos}/{len} {msg} ({eta} left)"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

pub async fn import_file(
    store: &dyn Store,
    path: &Path,
    csv: bool,
    batch: usize,
) -> anyhow::Result<Summary> {
    if csv {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return import_text(store, &text, true, batch).await;
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bar = progress(file.metadata().map(|m| m.len()).unwrap_or(0), true);
    let mut reader = std::io::BufReader::new(file);
    let mut summary = Summary::default();
    let mut pending = Vec::with_capacity(batch);
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        bar.inc(read as u64);
        if line.trim().is_empty() {
            continue;
        }
        match wire::parse_one(&line) {
            Ok(e) => pending.push(e),
            Err(p) => summary.reject(Problem {
                line: Some(number),
                ..p
            }),
        }
        if pending.len() >= batch {
            summary.flush(store, &mut pending).await?;
            bar.set_message(format!("{} imported", summary.imported));
        }
    }
    summary.flush(store, &mut pending).await?;
    bar.finish_and_clear();
    Ok(summary)
}

/// Imports events held in memory (the demo company's history, or a CSV file).
pub async fn import_text(
    store: &dyn Store,
    text: &str,
    csv: bool,
    batch: usize,
) -> anyhow::Result<Summary> {
    let rows: Vec<Result<NewEvent, Problem>> = if csv {
        wire::parse_csv(text)
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                wire::parse_one(l).map_err(|p| Problem {
                    line: Some(i + 1),
                    ..p
                })
            })
            .collect()
    };
    let bar = progress(rows.len() as u64, false);
    bar.set_message("rows");
    let mut summary = Summary::default();
    let mut pending = Vec::with_capacity(batch);
    for row in rows {
        bar.inc(1);
        match row {
            Ok(e) => pending.push(e),
            Err(p) => summary.reject(p),
        }
        if pending.len() >= batch {
            summary.flush(store, &mut pending).await?;
        }
    }
    summary.flush(store, &mut pending).await?;
    bar.finish_and_clear();
    Ok(summary)
}
