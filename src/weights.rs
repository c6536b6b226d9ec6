//! Model weights in HDF5 files that h5py reads: one `f32` dataset per parameter, named like the
//! exercises' parameters (`W1`, `b1`, `W2`, ...), and the model's name and hyper-parameters as
//! attributes of the file (`model`, a string; every hyper-parameter a float).

use std::path::Path;

use ndarray::ArrayD;

use crate::error::{hdf5_error, Error, Result};

/// A model's parameters, in order, with its name and hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// The model's name (`signs`, `three-layer`, ...).
    pub model: String,
    /// Hyper-parameters (`lr`, `reg`, `num_filters`, ...); [`Weights::load`] returns them
    /// sorted by name.
    pub hyper: Vec<(String, f64)>,
    /// `(name, values)` per parameter, in the model's order.
    pub params: Vec<(String, ArrayD<f32>)>,
}

/// The attribute that holds the order of the parameters (HDF5 lists members by name).
const ORDER: &str = "parameter_order";

impl Weights {
    /// Writes the weights to `path` (replacing the file).
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the file cannot be written (or a name is not ASCII).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let err = |e| hdf5_error(path, e);
        let file = hdf5::File::create(path).map_err(err)?;
        let ascii = |s: &str| {
            hdf5::types::VarLenAscii::from_ascii(s)
                .map_err(|e| Error::Hdf5(format!("{}: {s:?} is not ASCII: {e}", path.display())))
        };
        file.new_attr::<hdf5::types::VarLenAscii>()
            .create("model")
            .map_err(err)?
            .write_scalar(&ascii(&self.model)?)
            .map_err(err)?;
        for (name, value) in &self.hyper {
            file.new_attr::<f64>()
                .create(name.as_str())
                .map_err(err)?
                .write_scalar(value)
                .map_err(err)?;
        }
        let order: Vec<hdf5::types::VarLenAscii> = self
            .params
            .iter()
            .map(|(n, _)| ascii(n))
            .collect::<Result<_>>()?;
        file.new_attr::<hdf5::types::VarLenAscii>()
            .shape(order.len())
            .create(ORDER)
            .map_err(err)?
            .write(&order)
            .map_err(err)?;
        for (name, values) in &self.params {
            file.new_dataset_builder()
                .with_data(values)
                .create(name.as_str())
                .map_err(err)?;
        }
        Ok(())
    }

    /// Reads weights written by [`Weights::save`], checking that they are `model`'s.
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the file cannot be read, [`Error::DatasetMissing`] when a parameter
    /// or the model attribute is missing, [`Error::WrongModel`] when the file holds another
    /// model's weights.
    pub fn load(path: impl AsRef<Path>, model: &str) -> Result<Self> {
        let path = path.as_ref();
        let weights = Self::read(path)?;
        if weights.model != model {
            return Err(Error::WrongModel {
                path: path.display().to_string(),
                expected: model.to_string(),
                found: weights.model,
            });
        }
        Ok(weights)
    }

    /// Reads weights written by [`Weights::save`], of whatever model (see [`Weights::model`]).
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the file cannot be read, [`Error::DatasetMissing`] when a parameter
    /// or the model attribute is missing.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let err = |e| hdf5_error(path, e);
        let file = hdf5::File::open(path).map_err(err)?;
        let missing = |name: &str| Error::DatasetMissing {
            path: path.display().to_string(),
            name: name.to_string(),
        };
        let found: hdf5::types::VarLenAscii = file
            .attr("model")
            .map_err(|_| missing("attribute model"))?
            .read_scalar()
            .map_err(err)?;
        let order: Vec<hdf5::types::VarLenAscii> = file
            .attr(ORDER)
            .map_err(|_| missing(ORDER))?
            .read_raw()
            .map_err(err)?;
        let mut hyper = Vec::new();
        for name in file.attr_names().map_err(err)? {
            if name != "model" && name != ORDER {
                let value: f64 = file.attr(&name).map_err(err)?.read_scalar().map_err(err)?;
                hyper.push((name, value));
            }
        }
        hyper.sort_by(|a, b| a.0.cmp(&b.0));
        let mut params = Vec::new();
        for name in order {
            let name = name.as_str().to_string();
            let values: ArrayD<f32> = file
                .dataset(&name)
                .map_err(|_| missing(&name))?
                .read_dyn()
                .map_err(err)?;
            params.push((name, values));
        }
        Ok(Self {
            model: found.as_str().to_string(),
            hyper,
            params,
        })
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}
