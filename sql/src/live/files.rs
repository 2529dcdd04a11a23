//! Live files: the Parquet files compaction writes into a table's warehouse directory, and which
//! of them a reader may see.
//!
//! A live file is named `live-<date>-<first seq>-<last seq>.parquet`: it holds every event of its
//! table and tenant whose event date is `<date>` and whose log position is in
//! `first..=last` — all of them, so a reader that sees the file takes none of those events from
//! anywhere else. Compaction writes a round's files (one per table, tenant and date of the
//! round's events), then records the round's last position as the compacted watermark; a file
//! past the watermark belongs to a round that did not finish and is never read (start-up removes
//! it). Merging writes one file whose range spans the files it replaces; a file whose range lies
//! inside another file's range of the same date is replaced, never read again, and deleted once
//! no query can still be reading it.

use chrono::NaiveDate;

/// The file-name prefix of live files (other files of a table directory are the operator's).
pub const PREFIX: &str = "live-";
/// The prefix of a file being written (hidden from every listing until renamed).
pub const TEMP_PREFIX: &str = ".live-tmp-";

/// A live file's name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// The file name.
    pub name: String,
    /// The event date of its rows.
    pub date: NaiveDate,
    /// The first log position its range covers.
    pub first: u64,
    /// The last log position its range covers.
    pub last: u64,
}

impl LiveFile {
    /// The name of the file holding `date`'s events of `first..=last`.
    pub fn name(date: NaiveDate, first: u64, last: u64) -> String {
        format!("{PREFIX}{date}-{first:020}-{last:020}.parquet")
    }

    /// Parses a live file's name; `None` for any other file.
    pub fn parse(name: &str) -> Option<LiveFile> {
        let rest = name.strip_prefix(PREFIX)?.strip_suffix(".parquet")?;
        // `YYYY-MM-DD-<20 digits>-<20 digits>`
        let (date, range) = rest.split_at_checked(10)?;
        let (first, last) = range.strip_prefix('-')?.split_once('-')?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        (first <= last).then(|| LiveFile {
            name: name.to_string(),
            date,
            first,
            last,
        })
    }

    /// Whether `other`'s range (same date) lies inside this one's and is not the same.
    pub fn replaces(&self, other: &LiveFile) -> bool {
        self.date == other.date
            && self.first <= other.first
            && other.last <= self.last
            && (self.first, self.last) != (other.first, other.last)
    }
}

/// The live files a reader sees at compacted watermark `watermark`: those of finished rounds
/// (`last <= watermark`) that no other such file replaces. Sorted by date, then range.
pub fn visible(files: &[LiveFile], watermark: u64) -> Vec<LiveFile> {
    let finished: Vec<&LiveFile> = files.iter().filter(|f| f.last <= watermark).collect();
    let mut visible: Vec<LiveFile> = finished
        .iter()
        .filter(|f| !finished.iter().any(|g| g.replaces(f)))
        .map(|f| (*f).clone())
        .collect();
    visible.sort_by_key(|f| (f.date, f.first, f.last));
    visible.dedup_by(|a, b| (a.date, a.first, a.last) == (b.date, b.first, b.last));
    visible
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(date: &str, first: u64, last: u64) -> LiveFile {
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        LiveFile::parse(&LiveFile::name(date, first, last)).unwrap()
    }

    #[test]
    fn names_round_trip_and_other_files_are_not_live() {
        let f = file("2026-12-03", 1, 42);
        assert_eq!(
            f.name,
            "live-2026-12-03-00000000000000000001-00000000000000000042.parquet"
        );
        assert_eq!((f.first, f.last), (1, 42));
        for other in [
            "2026-01.parquet",
            "live-2026-12-03.parquet",
            "live-2026-13-03-1-2.parquet",
            "live-2026-12-03-5-2.parquet",
            ".live-tmp-1.parquet",
        ] {
            assert_eq!(LiveFile::parse(other), None, "{other}");
        }
    }

    #[test]
    fn readers_see_finished_rounds_and_merged_files_replace_their_parts() {
        let files = vec![
            file("2026-12-01", 1, 10),
            file("2026-12-01", 11, 20),
            file("2026-12-02", 11, 20),
            // the merge of the first two
            file("2026-12-01", 1, 20),
            // a round past the watermark: not finished
            file("2026-12-01", 21, 30),
        ];
        let seen: Vec<(u64, u64)> = visible(&files, 20)
            .iter()
            .map(|f| (f.first, f.last))
            .collect();
        assert_eq!(seen, vec![(1, 20), (11, 20)]);
        // Before the merge, both parts are seen.
        let seen = visible(&files[..3], 20).len();
        assert_eq!(seen, 3);
    }
}
