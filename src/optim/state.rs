//! The optimiser's state per parameter (update count; momentum or Adam's two moments) and
//! its checkpoint file.
//!
//! The file is a burn record (named MessagePack, with burn's metadata) of every parameter's
//! state by parameter id, so a resumed run continues bit for bit. It is written to a
//! temporary file in the same folder and renamed into place (`crate::atomic`): whole or not
//! at all.

use std::collections::HashMap;
use std::path::Path;

use burn::module::ParamId;
use burn::prelude::*;
use burn::record::{NamedMpkBytesRecorder, PrecisionSettings, Record, Recorder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One parameter's state buffers: on the host (CPU fast path) or as device tensors.
pub(super) enum Buffers<B: Backend> {
    Host(Vec<Vec<f32>>),
    Device(Vec<Tensor<B, 2>>),
}

/// One parameter's optimiser state.
pub(super) struct ParamState<B: Backend> {
    /// Updates applied so far (Adam's bias correction).
    pub steps: u64,
    pub buffers: Buffers<B>,
}

impl<B: Backend> ParamState<B> {
    /// Before the first update: `count` empty buffers, sized at the first update.
    pub fn new(count: usize) -> Self {
        Self {
            steps: 0,
            buffers: Buffers::Host(vec![Vec::new(); count]),
        }
    }

    /// The buffers as host vectors (read back from the device where they live there).
    fn host_buffers(&self) -> Vec<Vec<f32>> {
        match &self.buffers {
            Buffers::Host(b) => b.clone(),
            Buffers::Device(b) => b
                .iter()
                .map(|t| t.to_data().convert::<f32>().to_vec().expect("f32 state"))
                .collect(),
        }
    }
}

/// Every parameter's state, by parameter id.
pub(super) type States<B> = HashMap<ParamId, ParamState<B>>;

/// One parameter's state as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ParamRecord {
    id: u64,
    steps: u64,
    buffers: Vec<Vec<f32>>,
}

/// The checkpoint file's content: every parameter's state, sorted by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateRecord {
    params: Vec<ParamRecord>,
}

// Plain host data: the stored item is the record itself, whatever the precision settings.
impl<B: Backend> Record<B> for StateRecord {
    type Item<S: PrecisionSettings> = StateRecord;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        self
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, _device: &B::Device) -> Self {
        item
    }
}

type FileRecorder = NamedMpkBytesRecorder<burn::record::FullPrecisionSettings>;

/// Writes `states` to `path`, whole or not at all.
pub(super) fn save<B: Backend>(states: &States<B>, path: &Path) -> Result<()> {
    let mut params: Vec<ParamRecord> = states
        .iter()
        .map(|(id, state)| ParamRecord {
            id: id.val(),
            steps: state.steps,
            buffers: state.host_buffers(),
        })
        .collect();
    params.sort_by_key(|p| p.id);
    let bytes =
        <FileRecorder as Recorder<B>>::record(&FileRecorder::default(), StateRecord { params }, ())
            .map_err(|e| Error::data(path, format!("cannot encode the optimiser state: {e}")))?;
    crate::atomic::write(path, &bytes)
}

/// Reads the states [`save`] wrote, for an optimiser that keeps `buffers` buffers per
/// parameter; the error names the file and what is wrong with it.
pub(super) fn load<B: Backend>(path: &Path, buffers: usize) -> Result<States<B>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record: StateRecord =
        <FileRecorder as Recorder<B>>::load(&FileRecorder::default(), bytes, &Default::default())
            .map_err(|e| Error::data(path, format!("not an optimiser state file: {e}")))?;
    record
        .params
        .into_iter()
        .map(|param| {
            if param.buffers.len() != buffers {
                return Err(Error::data(
                    path,
                    format!(
                        "{} state buffers for parameter {}, where this optimiser keeps {buffers}",
                        param.buffers.len(),
                        param.id
                    ),
                ));
            }
            let state = ParamState {
                steps: param.steps,
                buffers: Buffers::Host(param.buffers),
            };
            Ok((ParamId::from(param.id), state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{CopyOptimizer, OptimizerSpec};
    use super::*;
    use crate::backend::TestBackend as I;

    #[test]
    fn state_survives_save_and_load() {
        let spec = OptimizerSpec::AdamW {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        };
        let device = Default::default();
        let id = ParamId::new();
        let theta = || Tensor::<I, 2>::from_data(TensorData::new(vec![0.5f32; 6], [2, 3]), &device);
        let grad =
            || Tensor::<I, 2>::from_data(TensorData::new(vec![0.1f32, -0.2, 0.3], [1, 3]), &device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mk.bin");
        // Host state, and device state read back for saving (the GPU backends' case).
        for tensor_path in [false, true] {
            let optimizer = || {
                let o = CopyOptimizer::<I>::new(&spec);
                if tensor_path { o.tensor_path_only() } else { o }
            };
            let mut first = optimizer();
            let after_one = first.step(0.01, id, theta(), grad(), &[0.25, 0.75], 1.0);
            first.save(&path).unwrap();
            let mut resumed = optimizer();
            resumed.load(&path).unwrap();
            let a: Vec<f32> = first
                .step(0.01, id, after_one.clone(), grad(), &[0.5, 0.5], 1.0)
                .into_data()
                .to_vec()
                .unwrap();
            let b: Vec<f32> = resumed
                .step(0.01, id, after_one, grad(), &[0.5, 0.5], 1.0)
                .into_data()
                .to_vec()
                .unwrap();
            assert_eq!(a, b, "a resumed optimiser continues exactly");
        }

        // An optimiser with another state layout (momentum SGD: one buffer) refuses the file.
        let sgd = OptimizerSpec::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let err = CopyOptimizer::<I>::new(&sgd).load(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("mk.bin") && message.contains("2 state buffers"),
            "{message}"
        );

        std::fs::write(&path, b"garbage").unwrap();
        let err = CopyOptimizer::<I>::new(&spec).load(&path).unwrap_err();
        assert!(matches!(err, Error::Data { .. }), "{err}");
        assert!(err.to_string().contains("mk.bin"), "{err}");
        let missing = dir.path().join("absent.bin");
        let err = CopyOptimizer::<I>::new(&spec).load(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
