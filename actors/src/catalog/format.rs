//! The file formats a snapshot may have, and how they are recognised from a key.

use serde::{Deserialize, Serialize};

/// How a snapshot's bytes are laid out. Detected from the key's extension unless given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    /// One JSON object per line.
    Ndjson,
    /// One JSON document: an array of objects (or NDJSON, as DuckDB's `read_json` accepts).
    Json,
    Csv,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Parquet, Format::Ndjson, Format::Json, Format::Csv];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ndjson => "ndjson",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// The format a key's extension names, ignoring a trailing compression suffix
    /// (`.gz`, `.zst`); `None` when the extension says nothing.
    pub fn detect(key: &str) -> Option<Format> {
        let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
        let name = ["gz", "zst"]
            .iter()
            .find_map(|c| name.strip_suffix(&format!(".{c}")))
            .unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "parquet" | "pq" => Format::Parquet,
            "ndjson" | "jsonl" => Format::Ndjson,
            "json" => Format::Json,
            "csv" | "tsv" => Format::Csv,
            _ => return None,
        })
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown format {s:?}: use parquet, ndjson, json or csv"))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn detects_from_the_extension() {
        assert_eq!(Format::detect("a/b/orders.parquet"), Some(Format::Parquet));
        assert_eq!(Format::detect("x.PQ"), Some(Format::Parquet));
        assert_eq!(Format::detect("events.jsonl"), Some(Format::Ndjson));
        assert_eq!(Format::detect("events.ndjson.gz"), Some(Format::Ndjson));
        assert_eq!(Format::detect("doc.json"), Some(Format::Json));
        assert_eq!(Format::detect("t.csv.zst"), Some(Format::Csv));
        assert_eq!(Format::detect("dir.csv/file"), None);
        assert_eq!(Format::detect("README"), None);
        assert_eq!(Format::detect("archive.gz"), None);
    }

    #[test]
    fn parses_names() {
        assert_eq!(" CSV ".parse::<Format>(), Ok(Format::Csv));
        assert!("xlsx".parse::<Format>().is_err());
    }
}
