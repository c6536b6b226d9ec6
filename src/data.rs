//! Image datasets: the course's HDF5 files, and a built-in synthetic set.
//!
//! The HDF5 format is the one of the exercises' data files (made with h5py): a file holds
//! `train_set_x` (or `test_set_x`), uint8 images `(m, H, W, C)`; `train_set_y` (or
//! `test_set_y`), integer labels `(m,)` (or `(1, m)`); and `list_classes`, one entry per class.
//! Pixels are divided by 255. Any number of classes and any image size are accepted.

use std::path::Path;

use ndarray::{Array4, Axis};

use crate::error::{hdf5_error, Error, Result};

/// Images `(m, H, W, C)` with values in `[0, 1]`, their class labels, and the class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Images, NHWC, pixels / 255.
    pub x: Array4<f32>,
    /// One label per image, each below `classes.len()`.
    pub y: Vec<usize>,
    /// Class names (`"0"`, `"1"`, ... when the file has none that can be read as text).
    pub classes: Vec<String>,
}

/// `train_set_*` or `test_set_*`, whichever the file holds.
fn prefix(file: &hdf5::File, path: &Path) -> Result<&'static str> {
    for p in ["train_set", "test_set"] {
        if file.link_exists(&format!("{p}_x")) {
            return Ok(p);
        }
    }
    Err(Error::DatasetMissing {
        path: path.display().to_string(),
        name: "train_set_x or test_set_x".into(),
    })
}

impl Dataset {
    /// Reads a file in the course's format (see the module docs).
    ///
    /// # Errors
    /// [`Error::Hdf5`] when the file cannot be opened or read, [`Error::DatasetMissing`] when
    /// it lacks the images, labels or class list, [`Error::DatasetType`] when the images are not
    /// uint8 or the labels not integers, [`Error::DatasetShape`] for a wrong rank or a label
    /// count that does not match the images, [`Error::LabelOutOfRange`] for a label that is
    /// negative or not below the number of classes.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = hdf5::File::open(path).map_err(|e| hdf5_error(path, e))?;
        let p = prefix(&file, path)?;
        let open = |name: &str| {
            file.dataset(name).map_err(|_| Error::DatasetMissing {
                path: path.display().to_string(),
                name: name.to_string(),
            })
        };
        let x_name = format!("{p}_x");
        let xs = open(&x_name)?;
        let dtype = xs
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| hdf5_error(path, e))?;
        if dtype != hdf5::types::TypeDescriptor::Unsigned(hdf5::types::IntSize::U1) {
            return Err(Error::DatasetType {
                path: path.display().to_string(),
                name: x_name,
                expected: "uint8".into(),
                found: format!("{dtype:?}"),
            });
        }
        let shape = xs.shape();
        let [m, h, w, c] =
            <[usize; 4]>::try_from(shape.as_slice()).map_err(|_| Error::DatasetShape {
                path: path.display().to_string(),
                name: x_name.clone(),
                expected: "(m, H, W, C)".into(),
                shape: shape.clone(),
            })?;
        let pixels: Vec<u8> = xs.read_raw().map_err(|e| hdf5_error(path, e))?;
        let x = Array4::from_shape_vec((m, h, w, c), pixels)
            .map_err(|_| Error::DatasetShape {
                path: path.display().to_string(),
                name: x_name.clone(),
                expected: "(m, H, W, C) elements".into(),
                shape: shape.clone(),
            })?
            .mapv(|v| f32::from(v) / 255.0);

        let y_name = format!("{p}_y");
        let ys = open(&y_name)?;
        let y_type = ys
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| hdf5_error(path, e))?;
        if !matches!(
            y_type,
            hdf5::types::TypeDescriptor::Integer(_) | hdf5::types::TypeDescriptor::Unsigned(_)
        ) {
            return Err(Error::DatasetType {
                path: path.display().to_string(),
                name: y_name,
                expected: "integers".into(),
                found: format!("{y_type:?}"),
            });
        }
        let y_shape = ys.shape();
        let labels: Vec<i64> = ys.read_raw().map_err(|e| hdf5_error(path, e))?;
        if labels.len() != m || y_shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(Error::DatasetShape {
                path: path.display().to_string(),
                name: y_name,
                expected: format!("({m},) labels, one per image"),
                shape: y_shape,
            });
        }

        let list = open("list_classes")?;
        let k = list.size();
        let classes: Vec<String> = match list.read_raw::<hdf5::types::FixedAscii<256>>() {
            Ok(names) => names.iter().map(|n| n.as_str().to_string()).collect(),
            Err(_) => (0..k).map(|i| i.to_string()).collect(),
        };
        let y = labels
            .iter()
            .enumerate()
            .map(|(index, &l)| match usize::try_from(l) {
                Ok(label) if label < k => Ok(label),
                Ok(label) => Err(Error::LabelOutOfRange {
                    index,
                    label,
                    classes: k,
                }),
                Err(_) => Err(Error::DatasetType {
                    path: path.display().to_string(),
                    name: format!("{p}_y"),
                    expected: "labels >= 0".into(),
                    found: format!("{l} at index {index}"),
                }),
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(Self { x, y, classes })
    }

    /// A deterministic synthetic set that a small convnet can learn, standing in for the SIGNS
    /// images (six hand signs): `n` images `(size, size, 3)` of dim noise (values below 0.3),
    /// each with one to three bright squares (sides `size/8 ..= size/4`) at random places, all
    /// of the colour of its class: red, green, blue, yellow, cyan, magenta (channels on at
    /// 0.7..1, off at 0..0.3). Image `i` has class `i % 6`; places, sizes, shades and noise
    /// come from `seed`.
    pub fn synthetic(n: usize, size: usize, seed: u64) -> Self {
        let mut rng = crate::rng::Rng::from_state(seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut next = move || rng.next_u64();
        const COLOURS: [[bool; 3]; 6] = [
            [true, false, false],
            [false, true, false],
            [false, false, true],
            [true, true, false],
            [false, true, true],
            [true, false, true],
        ];
        let mut x = Array4::<f32>::zeros((n, size, size, 3));
        let mut y = Vec::with_capacity(n);
        let (small, large) = ((size / 8).max(1), (size / 4).max(1));
        for (i, mut image) in x.axis_iter_mut(Axis(0)).enumerate() {
            let label = i % COLOURS.len();
            y.push(label);
            for v in image.iter_mut() {
                *v = (next() % 1000) as f32 / 1000.0 * 0.3;
            }
            let squares = 1 + next() % 3;
            for _ in 0..squares {
                let side = small + (next() % (large - small + 1) as u64) as usize;
                let r0 = (next() % (size - side + 1) as u64) as usize;
                let c0 = (next() % (size - side + 1) as u64) as usize;
                let colour: Vec<f32> = COLOURS[label]
                    .iter()
                    .map(|&on| {
                        let shade = (next() % 300) as f32 / 1000.0;
                        if on {
                            0.7 + shade
                        } else {
                            shade
                        }
                    })
                    .collect();
                for r in r0..r0 + side {
                    for c in c0..c0 + side {
                        for (k, &v) in colour.iter().enumerate() {
                            image[[r, c, k]] = v;
                        }
                    }
                }
            }
        }
        Self {
            x,
            y,
            classes: ["red", "green", "blue", "yellow", "cyan", "magenta"]
                .iter()
                .map(|c| c.to_string())
                .collect(),
        }
    }
}
