//! Reading image datasets from HDF5 files in the course's format, with typed errors for files
//! that are not; and the built-in synthetic set.

use std::path::PathBuf;

use ndarray::{Array1, Array2, Array3, Array4};
use wgpu_cnn::data::Dataset;
use wgpu_cnn::Error;

const DATA: &str = "../shared/data";

/// A fresh path in the temporary directory.
fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-cnn-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Writes a course-format file with the given images, labels and class count.
fn write_file(
    name: &str,
    images: impl FnOnce(&hdf5::File),
    labels: &[i64],
    classes: usize,
) -> PathBuf {
    let path = temp_file(name);
    let file = hdf5::File::create(&path).expect("create h5");
    images(&file);
    file.new_dataset_builder()
        .with_data(&Array1::from_vec(labels.to_vec()))
        .create("train_set_y")
        .expect("labels");
    let names: Vec<hdf5::types::FixedAscii<8>> = (0..classes)
        .map(|c| hdf5::types::FixedAscii::from_ascii(format!("c{c}").as_bytes()).unwrap())
        .collect();
    file.new_dataset_builder()
        .with_data(&Array1::from_vec(names))
        .create("list_classes")
        .expect("classes");
    path
}

fn u8_images(m: usize) -> impl FnOnce(&hdf5::File) {
    move |file: &hdf5::File| {
        let x = Array4::<u8>::from_shape_fn((m, 4, 5, 3), |(i, h, w, c)| {
            (i * 50 + h * 10 + w + c) as u8
        });
        file.new_dataset_builder()
            .with_data(&x)
            .create("train_set_x")
            .expect("images");
    }
}

#[test]
fn a_course_format_file_reads_with_pixels_over_255_and_class_names() {
    let path = write_file("good.h5", u8_images(3), &[0, 2, 1], 3);
    let d = Dataset::read(&path).expect("reads");
    assert_eq!(d.x.dim(), (3, 4, 5, 3));
    assert_eq!(d.x[[2, 3, 4, 2]], (100 + 30 + 4 + 2) as f32 / 255.0);
    assert_eq!(d.y, vec![0, 2, 1]);
    assert_eq!(d.classes, vec!["c0", "c1", "c2"]);
}

#[test]
fn malformed_files_are_typed_errors() {
    // No such file.
    let e = Dataset::read(temp_file("absent.h5")).unwrap_err();
    assert!(matches!(e, Error::Hdf5(_)), "{e}");
    // No images.
    let path = write_file("no-images.h5", |_| {}, &[0], 2);
    let e = Dataset::read(&path).unwrap_err();
    assert!(matches!(e, Error::DatasetMissing { .. }), "{e}");
    // Float images.
    let path = write_file(
        "floats.h5",
        |f| {
            f.new_dataset_builder()
                .with_data(&Array4::<f32>::zeros((1, 2, 2, 3)))
                .create("train_set_x")
                .unwrap();
        },
        &[0],
        2,
    );
    let e = Dataset::read(&path).unwrap_err();
    assert!(matches!(e, Error::DatasetType { .. }), "{e}");
    // Images of rank 3.
    let path = write_file(
        "rank3.h5",
        |f| {
            f.new_dataset_builder()
                .with_data(&Array3::<u8>::zeros((1, 2, 2)))
                .create("train_set_x")
                .unwrap();
        },
        &[0],
        2,
    );
    let e = Dataset::read(&path).unwrap_err();
    assert!(
        matches!(&e, Error::DatasetShape { shape, .. } if shape == &[1, 2, 2]),
        "{e}"
    );
    // A label not below the class count, and a negative one.
    let path = write_file("label5.h5", u8_images(2), &[0, 5], 3);
    let e = Dataset::read(&path).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LabelOutOfRange {
                index: 1,
                label: 5,
                classes: 3
            }
        ),
        "{e}"
    );
    let path = write_file("negative.h5", u8_images(2), &[0, -1], 3);
    assert!(matches!(
        Dataset::read(&path).unwrap_err(),
        Error::DatasetType { .. }
    ));
    // Fewer labels than images.
    let path = write_file("count.h5", u8_images(3), &[0, 1], 3);
    let e = Dataset::read(&path).unwrap_err();
    assert!(matches!(e, Error::DatasetShape { .. }), "{e}");
    let _ = Array2::<u8>::zeros((1, 1));
}

#[test]
fn the_course_files_read_when_present() {
    let train = format!("{DATA}/train_catvnoncat.h5");
    if !std::path::Path::new(&train).exists() {
        eprintln!("skipped: {train} is absent");
        return;
    }
    let d = Dataset::read(&train).expect("catvnoncat train");
    assert_eq!(d.x.dim(), (209, 64, 64, 3));
    assert_eq!(d.classes.len(), 2);
    assert!(d.y.iter().all(|&l| l < 2) && d.y.contains(&0) && d.y.contains(&1));
    assert!(d.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    let signs = format!("{DATA}/test_signs.h5");
    if std::path::Path::new(&signs).exists() {
        let s = Dataset::read(&signs).expect("signs test");
        assert_eq!(s.x.dim(), (120, 64, 64, 3));
        assert_eq!(s.classes.len(), 6);
        assert!((0..6).all(|c| s.y.contains(&c)));
    }
}

#[test]
fn the_synthetic_set_is_deterministic_balanced_and_coloured_by_class() {
    let a = Dataset::synthetic(60, 64, 7);
    assert_eq!(a, Dataset::synthetic(60, 64, 7));
    assert_ne!(a.x, Dataset::synthetic(60, 64, 8).x);
    assert_eq!(a.x.dim(), (60, 64, 64, 3));
    assert_eq!(a.classes.len(), 6);
    assert!(a.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    for c in 0..6 {
        assert_eq!(a.y.iter().filter(|&&l| l == c).count(), 10);
    }
    // Bright values (noise stays below 0.3) appear only in the channels of the class's colour,
    // in at least one square of side 8.
    let on = [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0, 1, 1],
        [1, 0, 1],
    ];
    for (i, image) in a.x.outer_iter().enumerate() {
        for (k, &lit) in on[a.y[i]].iter().enumerate() {
            let bright = image
                .index_axis(ndarray::Axis(2), k)
                .iter()
                .filter(|&&v| v >= 0.7)
                .count();
            if lit == 1 {
                assert!(
                    bright >= 64,
                    "image {i} channel {k}: {bright} bright pixels"
                );
            } else {
                assert_eq!(bright, 0, "image {i} channel {k}");
            }
        }
    }
}

#[test]
fn weights_round_trip_bitwise_and_refuse_another_models_file() {
    use ndarray::{ArrayD, IxDyn};
    use wgpu_cnn::weights::Weights;
    let w = Weights {
        model: "signs".into(),
        hyper: vec![("beta1".into(), 0.9), ("lr".into(), 0.009)],
        params: vec![
            (
                "W1".into(),
                ArrayD::from_shape_fn(IxDyn(&[4, 4, 3, 8]), |i| {
                    (i[0] as f32 - 1.5) * 1e-3 + i[3] as f32 / 7.0
                }),
            ),
            (
                "b1".into(),
                ArrayD::from_elem(IxDyn(&[8]), f32::MIN_POSITIVE),
            ),
            ("W3".into(), ArrayD::from_elem(IxDyn(&[64, 6]), -0.1)),
        ],
    };
    let path = temp_file("weights.h5");
    w.save(&path).unwrap();
    let back = Weights::load(&path, "signs").unwrap();
    assert_eq!(back.model, "signs");
    assert_eq!(back.hyper, w.hyper);
    assert_eq!(back.params.len(), 3);
    for ((n, a), (m, b)) in w.params.iter().zip(&back.params) {
        assert_eq!(n, m, "order kept");
        assert_eq!(a.shape(), b.shape());
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{n} bitwise"
        );
    }
    assert!(back.get("b1").is_some() && back.get("W9").is_none());
    let e = Weights::load(&path, "three-layer").unwrap_err();
    assert!(
        matches!(&e, Error::WrongModel { expected, found, .. } if expected == "three-layer" && found == "signs"),
        "{e}"
    );
    let e = Weights::load(temp_file("none.h5"), "signs").unwrap_err();
    assert!(matches!(e, Error::Hdf5(_)), "{e}");
}
