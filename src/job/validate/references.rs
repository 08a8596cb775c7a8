//! Edit inputs: Gemini reference images, and Imagen reference images with their
//! mask / control / style / subject configs and unique ids.

use crate::catalog::ModelInfo;
use crate::job::spec::{JobSpec, MaskMode, ReferenceType};

use super::Report;
use super::ops::check_unit;

pub(super) fn check_edit(spec: &JobSpec, model: &ModelInfo, r: &mut Report) {
    if model.family.is_gemini() {
        if spec.images.is_empty() && spec.reference_images.is_empty() {
            r.err("images", "an edit needs the image to edit");
        }
        for (i, ref_img) in spec.reference_images.iter().enumerate() {
            if matches!(
                ref_img.reference_type,
                ReferenceType::Mask | ReferenceType::Control
            ) || ref_img.image.is_none()
            {
                r.err(format!("reference_images[{i}]"), "Gemini models take reference images with an `image` (raw, style, subject, content); masks and controls need an Imagen capability model, or describe the edit in the prompt");
            }
        }
        return;
    }
    if spec.reference_images.is_empty() {
        r.err(
            "reference_images",
            "an Imagen edit needs at least one reference image",
        );
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, ref_img) in spec.reference_images.iter().enumerate() {
        let field = format!("reference_images[{i}]");
        let id = ref_img.reference_id.unwrap_or(i as u32 + 1);
        if !ids.insert(id) {
            r.err(
                format!("{field}.reference_id"),
                format!("id {id} is used twice"),
            );
        }
        check_reference(ref_img, &field, r);
    }
}

fn check_reference(ref_img: &crate::job::spec::ReferenceImage, field: &str, r: &mut Report) {
    use ReferenceType::*;
    let t = ref_img.reference_type;
    let auto_mask = t == Mask
        && matches!(
            ref_img.mask_mode,
            Some(MaskMode::Background | MaskMode::Foreground | MaskMode::Semantic)
        );
    if ref_img.image.is_none() && !auto_mask {
        r.err(format!("{field}.image"), format!("a {} reference needs an image (only background/foreground/semantic masks are computed by Google)", t.wire()));
    }
    let wrong = |set: bool, name: &str, kind: ReferenceType, r: &mut Report| {
        if set && t != kind {
            r.err(
                format!("{field}.{name}"),
                format!("applies to {} references only", kind.wire()),
            );
        }
    };
    wrong(ref_img.mask_mode.is_some(), "mask_mode", Mask, r);
    wrong(!ref_img.mask_classes.is_empty(), "mask_classes", Mask, r);
    wrong(ref_img.mask_dilation.is_some(), "mask_dilation", Mask, r);
    wrong(ref_img.control_type.is_some(), "control_type", Control, r);
    wrong(
        ref_img.compute_control.is_some(),
        "compute_control",
        Control,
        r,
    );
    wrong(
        ref_img.style_description.is_some(),
        "style_description",
        Style,
        r,
    );
    wrong(ref_img.subject_type.is_some(), "subject_type", Subject, r);
    wrong(
        ref_img.subject_description.is_some(),
        "subject_description",
        Subject,
        r,
    );
    if ref_img.mask_classes.len() > 5 {
        r.err(format!("{field}.mask_classes"), "at most 5 classes");
    }
    if !ref_img.mask_classes.is_empty() && ref_img.mask_mode != Some(MaskMode::Semantic) {
        r.err(format!("{field}.mask_classes"), "needs mask_mode semantic");
    }
    if ref_img.mask_mode == Some(MaskMode::Semantic) && ref_img.mask_classes.is_empty() {
        r.err(
            format!("{field}.mask_classes"),
            "a semantic mask needs at least one class id",
        );
    }
    check_unit(
        r,
        &format!("{field}.mask_dilation"),
        ref_img.mask_dilation,
        0.0,
        1.0,
    );
}
