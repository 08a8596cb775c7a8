//! `:predict` bodies for the Imagen families (spec §5): generate, edit, upscale,
//! recontext / virtual try-on, segment. `{"instances": [one], "parameters": {…}}` with
//! `labels` at the top level (Vertex only).

use serde_json::{Value, json};

use crate::catalog::{Backend, Family};
use crate::job::spec::{JobSpec, Operation, ReferenceImage};

use super::{BuildError, Obj, Resolved, labels, resolved};
use crate::providers::endpoint::Target;

/// `{bytesBase64Encoded, mimeType}` or `{gcsUri, mimeType?}`.
fn image(field: &str, img: &crate::job::ImageInput) -> Result<Value, BuildError> {
    Ok(match resolved(field, img)? {
        Resolved::Inline { data, mime } => json!({ "bytesBase64Encoded": data, "mimeType": mime }),
        Resolved::Gcs { uri, mime } => {
            let mut o = Obj::new();
            o.set("gcsUri", uri)
                .opt("mimeType", mime.map(str::to_string));
            o.into_value()
        }
    })
}

/// Parameters shared by the image-producing families, in the SDK's field set.
fn common_parameters(spec: &JobSpec, p: &mut Obj) {
    let mut output = Obj::new();
    output
        .opt("mimeType", spec.output_mime_type.clone())
        .opt("compressionQuality", spec.output_compression_quality);
    p.opt("storageUri", spec.output_gcs_uri.clone())
        .opt("negativePrompt", spec.negative_prompt.clone())
        .opt("sampleCount", spec.number_of_images)
        .opt("aspectRatio", spec.aspect_ratio.clone())
        .opt("guidanceScale", spec.guidance_scale)
        .opt("seed", spec.seed)
        .opt("safetySetting", spec.safety_filter_level.map(|s| s.wire()))
        .opt("personGeneration", spec.person_generation.map(|s| s.wire()))
        .opt("includeSafetyAttributes", spec.include_safety_attributes)
        .opt("includeRaiReason", spec.include_rai_reason)
        .opt("language", spec.language.clone())
        .nested("outputOptions", output)
        .opt("addWatermark", spec.add_watermark)
        .opt("sampleImageSize", spec.image_size.clone())
        .opt("enhancePrompt", spec.enhance_prompt);
}

fn reference(i: usize, r: &ReferenceImage) -> Result<Value, BuildError> {
    let mut o = Obj::new();
    if let Some(img) = &r.image {
        o.set(
            "referenceImage",
            image(&format!("reference_images[{i}].image"), img)?,
        );
    }
    o.set("referenceId", r.reference_id.unwrap_or(i as u32 + 1))
        .set("referenceType", r.reference_type.wire());
    let mut mask = Obj::new();
    mask.opt("maskMode", r.mask_mode.map(|m| m.wire()))
        .opt(
            "maskClasses",
            (!r.mask_classes.is_empty()).then(|| json!(r.mask_classes)),
        )
        .opt("dilation", r.mask_dilation);
    let mut control = Obj::new();
    control
        .opt("controlType", r.control_type.map(|c| c.wire()))
        .opt("computeControl", r.compute_control);
    let mut style = Obj::new();
    style.opt("styleDescription", r.style_description.clone());
    let mut subject = Obj::new();
    subject
        .opt("subjectType", r.subject_type.map(|s| s.wire()))
        .opt("subjectDescription", r.subject_description.clone());
    o.nested("maskImageConfig", mask)
        .nested("controlImageConfig", control)
        .nested("styleImageConfig", style)
        .nested("subjectImageConfig", subject);
    Ok(o.into_value())
}

fn instance(spec: &JobSpec, family: Family) -> Result<(Value, Obj), BuildError> {
    let mut inst = Obj::new();
    let mut params = Obj::new();
    match (spec.op, family) {
        (Operation::Generate, Family::ImagenGenerate) => {
            inst.opt("prompt", spec.prompt.clone());
            common_parameters(spec, &mut params);
        }
        (Operation::Edit, Family::ImagenCapability) => edit(spec, &mut inst, &mut params)?,
        (Operation::Upscale, Family::ImagenGenerate | Family::ImagenUpscale) => {
            upscale(spec, &mut inst, &mut params)?
        }
        (Operation::Recontext, Family::ProductRecontext | Family::VirtualTryOn) => {
            recontext(spec, &mut inst, &mut params)?
        }
        (Operation::Segment, Family::Segmentation) => segment(spec, &mut inst, &mut params)?,
        _ => {
            return Err(BuildError::Unsupported {
                model: spec.model.clone(),
                op: spec.op.to_string(),
            });
        }
    }
    Ok((inst.into_value(), params))
}

/// Edit (Imagen capability): the reference images and the edit mode.
fn edit(spec: &JobSpec, inst: &mut Obj, params: &mut Obj) -> Result<(), BuildError> {
    let refs = spec
        .reference_images
        .iter()
        .enumerate()
        .map(|(i, r)| reference(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    inst.set("prompt", spec.prompt.clone().unwrap_or_default())
        .set("referenceImages", refs);
    common_parameters(spec, params);
    params.opt("editMode", spec.edit_mode.map(|m| m.wire()));
    let mut edit = Obj::new();
    edit.opt("baseSteps", spec.base_steps);
    params.nested("editConfig", edit);
    Ok(())
}

/// Upscale: the image and the upscale config.
fn upscale(spec: &JobSpec, inst: &mut Obj, params: &mut Obj) -> Result<(), BuildError> {
    let img = spec
        .images
        .first()
        .ok_or(BuildError::Unresolved("images[0]".into()))?;
    inst.set("image", image("images[0]", img)?);
    let mut up = Obj::new();
    up.opt("upscaleFactor", spec.upscale_factor.clone())
        .opt("enhanceInputImage", spec.enhance_input_image)
        .opt("imagePreservationFactor", spec.image_preservation_factor);
    params.nested("upscaleConfig", up);
    common_parameters(spec, params);
    // The SDK always sends these two (spec §5.3).
    params.set("sampleCount", 1).set("mode", "upscale");
    Ok(())
}

/// Product recontext and virtual try-on: the person and product images.
fn recontext(spec: &JobSpec, inst: &mut Obj, params: &mut Obj) -> Result<(), BuildError> {
    inst.opt("prompt", spec.prompt.clone());
    if let Some(person) = &spec.person_image {
        inst.set(
            "personImage",
            json!({ "image": image("person_image", person)? }),
        );
    }
    let products = spec
        .product_images
        .iter()
        .enumerate()
        .map(|(i, p)| Ok(json!({ "image": image(&format!("product_images[{i}]"), p)? })))
        .collect::<Result<Vec<_>, BuildError>>()?;
    inst.set("productImages", products);
    params
        .opt("sampleCount", spec.number_of_images)
        .opt("baseSteps", spec.base_steps);
    let mut rest = Obj::new();
    common_parameters(spec, &mut rest);
    if let Value::Object(map) = rest.into_value() {
        for (k, v) in map {
            params.0.entry(k).or_insert(v);
        }
    }
    Ok(())
}

/// Segmentation: the image, an optional scribble, and the mask parameters.
fn segment(spec: &JobSpec, inst: &mut Obj, params: &mut Obj) -> Result<(), BuildError> {
    let img = spec
        .images
        .first()
        .ok_or(BuildError::Unresolved("images[0]".into()))?;
    inst.set("image", image("images[0]", img)?)
        .opt("prompt", spec.prompt.clone());
    if let Some(s) = &spec.scribble_image {
        inst.set("scribble", json!({ "image": image("scribble_image", s)? }));
    }
    params
        .opt("mode", spec.segment_mode.map(|m| m.wire()))
        .opt("maxPredictions", spec.max_predictions)
        .opt("confidenceThreshold", spec.confidence_threshold)
        .opt("maskDilation", spec.mask_dilation)
        .opt("binaryColorThreshold", spec.binary_color_threshold);
    Ok(())
}

/// The `:predict` body.
pub(super) fn body(spec: &JobSpec, family: Family, target: &Target) -> Result<Value, BuildError> {
    let (inst, params) = instance(spec, family)?;
    let mut body = Obj::new();
    body.set("instances", vec![inst]);
    if !params.is_empty() {
        body.set("parameters", params.into_value());
    }
    if target.backend == Backend::Vertex {
        body.opt("labels", labels(spec));
    }
    Ok(body.into_value())
}
