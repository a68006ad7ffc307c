//! Tokenizers from a `tokenizer.json`, a WordPiece `vocab.txt`, or the Hub by model name.

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};
use tokenizers::Tokenizer;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;

use super::hub::HubAccess;
use crate::error::{Error, Result};

/// Resolves `name`: a `tokenizer.json` or `vocab.txt` path, a folder holding one, a folder
/// `<data dir>/<name>/` (for a Hub id `org/model` also `<data dir>/model/`), or a Hub model repository (cache first, network if allowed).
pub fn load(name: &str, dirs: &[PathBuf], hub: &HubAccess) -> Result<Tokenizer> {
    let direct = PathBuf::from(name);
    let mut candidates = vec![
        direct.clone(),
        direct.join("tokenizer.json"),
        direct.join("vocab.txt"),
    ];
    // A Hub id `org/model` is also looked for as `<data dir>/model/`, as checkpoints are.
    let base = Path::new(name)
        .file_name()
        .map(PathBuf::from)
        .filter(|b| b.as_os_str() != name);
    for dir in dirs {
        for folder in std::iter::once(dir.join(name)).chain(base.iter().map(|b| dir.join(b))) {
            candidates.push(folder.join("tokenizer.json"));
            candidates.push(folder.join("vocab.txt"));
        }
    }
    if let Some(path) = candidates.iter().find(|p| p.is_file()) {
        return from_file(path);
    }
    let repo = Repo::new(name.to_string(), RepoType::Model);
    if let Some(path) = hub.cache.repo(repo.clone()).get("tokenizer.json") {
        return from_file(&path);
    }
    let searched = dirs
        .iter()
        .map(|d| d.join(name).display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let hint = |why: String| {
        Error::MissingData(format!(
            "tokenizer `{name}`: no tokenizer.json or vocab.txt at `{name}` or in {searched}; the Hub \
             model `{name}` is {why}. Put tokenizer.json (or vocab.txt) in <data dir>/{name}/, or run \
             once with network access to fill the hub cache at {}",
            hub.cache.path().display()
        ))
    };
    if hub.offline {
        return Err(hint("not in the cache (HF_HUB_OFFLINE is set)".into()));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hub.cache.clone())
        .with_progress(false)
        .build()
        .map_err(|e| hint(format!("unreachable ({e})")))?;
    let path = api
        .repo(repo)
        .get("tokenizer.json")
        .map_err(|e| hint(format!("not downloadable ({e})")))?;
    from_file(&path)
}

/// Loads a `tokenizer.json`, or builds BERT's uncased WordPiece pipeline around a `vocab.txt`.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    if path.file_name().is_some_and(|n| n == "vocab.txt") {
        return from_vocab(path);
    }
    Tokenizer::from_file(path).map_err(|e| Error::data(path, format!("not a tokenizer.json: {e}")))
}

fn from_vocab(path: &Path) -> Result<Tokenizer> {
    let vocab = path
        .to_str()
        .ok_or_else(|| Error::data(path, "path is not UTF-8"))?;
    let wordpiece = WordPiece::from_file(vocab)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| Error::data(path, format!("not a WordPiece vocabulary: {e}")))?;
    let id = |token: &str| {
        wordpiece_id(&wordpiece, token)
            .ok_or_else(|| Error::data(path, format!("vocabulary has no {token} token")))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tokenizer = Tokenizer::new(wordpiece);
    tokenizer.with_normalizer(Some(BertNormalizer::default()));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(tokenizer)
}

fn wordpiece_id(wordpiece: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    wordpiece.token_to_id(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_data;

    #[test]
    fn both_bert_files_encode_the_reference_sentence() {
        let dir = test_data();
        for file in ["tokenizer.json", "vocab.txt"] {
            let tokenizer = from_file(&dir.join("bert-base-uncased").join(file)).unwrap();
            let ids = tokenizer
                .encode("Hello, world!", true)
                .unwrap()
                .get_ids()
                .to_vec();
            assert_eq!(ids, [101, 7592, 1010, 2088, 999, 102], "{file}");
            let pair = tokenizer
                .encode(("Hello", "world!"), true)
                .unwrap()
                .get_ids()
                .to_vec();
            assert_eq!(pair, [101, 7592, 102, 2088, 999, 102], "{file}");
        }
    }

    #[test]
    fn a_missing_tokenizer_offline_says_what_to_do() {
        let empty = tempfile::tempdir().unwrap();
        let hub = HubAccess {
            cache: hf_hub::Cache::new(empty.path().to_path_buf()),
            offline: true,
        };
        let err = load("no-such-model", &[empty.path().to_path_buf()], &hub)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no-such-model")
                && err.contains("tokenizer.json")
                && err.contains("HF_HUB_OFFLINE"),
            "{err}"
        );
    }
}
