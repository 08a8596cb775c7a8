use super::*;
use crate::job::JobSpec;

const PNG_4X4: &str = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4IScHRwzEcQCxYxBBO0tjggAAAABJRU5ErkJggg==";

fn spec(json: &str) -> JobSpec {
    JobSpec::from_json(json).unwrap()
}

fn errors(json: &str, backend: Backend) -> Vec<String> {
    let ctx = ValidationContext {
        backend,
        check_local_files: true,
    };
    match validate(&spec(json), &ctx) {
        Ok(()) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn fields(json: &str) -> Vec<String> {
    errors(json, Backend::Vertex)
        .iter()
        .map(|e| e.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn a_minimal_gemini_generate_is_valid() {
    assert!(fields(r#"{"model":"gemini-2.5-flash-image","prompt":"a cat"}"#).is_empty());
}

#[test]
fn unknown_fields_are_named_by_the_parser() {
    let err = JobSpec::from_json(r#"{"model":"m","prompt":"x","aspectratio":"1:1"}"#).unwrap_err();
    assert!(err.contains("aspectratio"), "{err}");
    let err = JobSpec::from_json(r#"{"op":"paint"}"#).unwrap_err();
    assert!(err.starts_with("op:"), "{err}");
}

#[test]
fn aspect_ratio_and_size_are_checked_per_model() {
    assert_eq!(
        fields(r#"{"model":"gemini-2.5-flash-image","prompt":"x","aspect_ratio":"1:8"}"#),
        ["aspect_ratio"]
    );
    assert!(fields(r#"{"model":"gemini-3.1-flash-image","prompt":"x","aspect_ratio":"1:8","image_size":"512"}"#).is_empty());
    assert_eq!(
        fields(r#"{"model":"gemini-3-pro-image","prompt":"x","image_size":"2k"}"#),
        ["image_size"]
    );
    assert_eq!(
        fields(r#"{"model":"imagen-4.0-generate-001","prompt":"x","number_of_images":5}"#),
        ["number_of_images"]
    );
}

#[test]
fn missing_prompt_and_wrong_operation_are_named() {
    assert_eq!(fields(r#"{"model":"gemini-2.5-flash-image"}"#), ["prompt"]);
    assert_eq!(
        fields(r#"{"op":"edit","model":"imagen-4.0-generate-001","prompt":"x"}"#),
        ["op"]
    );
    assert_eq!(fields(r#"{"prompt":"x"}"#), ["model"]);
    assert_eq!(fields(r#"{"model":"dall-e-3","prompt":"x"}"#), ["model"]);
}

#[test]
fn vertex_only_fields_are_refused_on_the_developer_api() {
    let errs = errors(
        r#"{"model":"gemini-2.5-flash-image","prompt":"x","person_generation":"ALLOW_ADULT","output_mime_type":"image/jpeg"}"#,
        Backend::GeminiApi,
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("output_mime_type") || errs[0].starts_with("person_generation"));
    let errs = errors(
        r#"{"model":"imagen-4.0-generate-001","prompt":"x"}"#,
        Backend::GeminiApi,
    );
    assert!(errs[0].starts_with("model:"), "{errs:?}");
}

#[test]
fn imagen_seed_requires_watermark_off() {
    assert_eq!(
        fields(r#"{"model":"imagen-4.0-generate-001","prompt":"x","seed":1}"#),
        ["seed"]
    );
    assert!(
        fields(
            r#"{"model":"imagen-4.0-generate-001","prompt":"x","seed":1,"add_watermark":false}"#
        )
        .is_empty()
    );
}

#[test]
fn input_images_are_counted_sized_and_typed() {
    let four = format!(r#""{PNG_4X4}","{PNG_4X4}","{PNG_4X4}","{PNG_4X4}""#).replace(
        &format!(r#""{PNG_4X4}""#),
        &format!(r#"{{"data":"{PNG_4X4}"}}"#),
    );
    let json = format!(
        r#"{{"op":"compose","model":"gemini-2.5-flash-image","prompt":"x","images":[{four}]}}"#
    );
    assert_eq!(fields(&json), ["images"]);
    let json = r#"{"op":"compose","model":"gemini-2.5-flash-image","prompt":"x","images":[{"data":"bm90IGFuIGltYWdl"},{"data":"!!"}]}"#;
    assert_eq!(fields(json), ["images[0]", "images[1]"]);
    let big = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        vec![0u8; 7_000_001],
    );
    let json = format!(
        r#"{{"op":"edit","model":"gemini-2.5-flash-image","prompt":"x","images":[{{"data":"{big}","mime_type":"image/png"}}]}}"#
    );
    assert_eq!(fields(&json), ["images[0]"]);
    let json = r#"{"op":"edit","model":"gemini-2.5-flash-image","prompt":"x","images":["/nonexistent/a.png"]}"#;
    assert_eq!(fields(json), ["images[0]"]);
}

#[test]
fn imagen_edit_references_are_checked() {
    let json = format!(
        r#"{{"op":"edit","model":"imagen-3.0-capability-001","prompt":"x","edit_mode":"inpaint_insertion",
        "reference_images":[{{"reference_type":"raw","image":{{"data":"{PNG_4X4}"}}}},
                            {{"reference_type":"mask","mask_mode":"user_provided","reference_id":1}},
                            {{"reference_type":"style","control_type":"canny","image":{{"data":"{PNG_4X4}"}}}}]}}"#
    );
    assert_eq!(
        fields(&json),
        [
            "reference_images[1].reference_id",
            "reference_images[1].image",
            "reference_images[2].control_type"
        ]
    );
}

#[test]
fn fields_of_other_operations_are_refused() {
    assert_eq!(
        fields(r#"{"model":"gemini-2.5-flash-image","prompt":"x","upscale_factor":"x2"}"#),
        ["upscale_factor"]
    );
    assert_eq!(
        fields(r#"{"model":"imagen-4.0-generate-001","prompt":"x","temperature":0.5}"#),
        ["temperature"]
    );
}

#[test]
fn segmentation_modes_need_their_inputs() {
    let json = format!(
        r#"{{"op":"segment","model":"image-segmentation-001","segment_mode":"interactive","images":[{{"data":"{PNG_4X4}"}}]}}"#
    );
    assert_eq!(fields(&json), ["scribble_image"]);
    let json = format!(
        r#"{{"op":"segment","model":"image-segmentation-001","segment_mode":"prompt","images":[{{"data":"{PNG_4X4}"}}]}}"#
    );
    assert_eq!(fields(&json), ["prompt"]);
}

#[test]
fn gemini_text_segmentation_takes_what_it_can_do_on_either_backend() {
    let seg = |extra: &str| {
        format!(
            r#"{{"op":"segment","model":"gemini-3.5-flash","images":[{{"data":"{PNG_4X4}"}}]{extra}}}"#
        )
    };
    for backend in [Backend::Vertex, Backend::GeminiApi] {
        assert!(errors(&seg(""), backend).is_empty());
        assert!(errors(&seg(r#","prompt":"the cat, the sofa""#), backend).is_empty());
        assert!(
            errors(
                &seg(r#","segment_mode":"semantic","prompt":"cat","max_predictions":3,"binary_color_threshold":96"#),
                backend
            )
            .is_empty()
        );
    }
    let e = errors(&seg(r#","segment_mode":"background""#), Backend::Vertex);
    assert!(
        e[0].starts_with("segment_mode:") && e[0].contains("Imagen-only"),
        "{e:?}"
    );
    assert_eq!(fields(&seg(r#","segment_mode":"prompt""#)), ["prompt"]);
    assert_eq!(
        fields(&seg(r#","confidence_threshold":0.5"#)),
        ["confidence_threshold"]
    );
    assert_eq!(fields(&seg(r#","temperature":0.5"#)), ["temperature"]);
    // A text model does not generate; an image model does not segment (submit routes
    // segment lines on image models to `[models] segment_model`).
    assert_eq!(
        fields(r#"{"model":"gemini-3.5-flash","prompt":"a cat"}"#),
        ["op"]
    );
    let on_image = format!(
        r#"{{"op":"segment","model":"gemini-3.1-flash-image","images":[{{"data":"{PNG_4X4}"}}]}}"#
    );
    assert!(errors(&on_image, Backend::Vertex)[0].contains("gemini-3.5-flash"));
}

#[test]
fn image_operations_need_image_output() {
    let f = |m: &str| {
        fields(&format!(
            r#"{{"model":"gemini-3.1-flash-image","prompt":"x","response_modalities":{m}}}"#
        ))
    };
    assert_eq!(f(r#"["TEXT"]"#), ["response_modalities"]);
    assert!(f(r#"["TEXT","IMAGE"]"#).is_empty());
    assert!(f(r#"["IMAGE"]"#).is_empty());
}

#[test]
fn virtual_try_on_needs_a_person() {
    let json = format!(
        r#"{{"op":"recontext","model":"virtual-try-on-001","product_images":[{{"data":"{PNG_4X4}"}}]}}"#
    );
    assert_eq!(fields(&json), ["person_image"]);
}

#[test]
fn flash_lite_image_takes_1k_and_minimal_or_high_thinking_only() {
    let lite = r#"{"model":"gemini-3.1-flash-lite-image","prompt":"a cat""#;
    assert!(fields(&format!("{lite}, \"thinking_level\": \"high\"}}")).is_empty());
    assert!(fields(&format!("{lite}, \"image_size\": \"1K\"}}")).is_empty());
    assert_eq!(
        fields(&format!("{lite}, \"thinking_level\": \"low\"}}")),
        vec!["thinking_level"]
    );
    let e = errors(
        &format!("{lite}, \"thinking_level\": \"medium\"}}"),
        Backend::GeminiApi,
    );
    assert!(e[0].contains("allowed: minimal, high"), "{e:?}");
    assert_eq!(
        fields(&format!("{lite}, \"image_size\": \"2K\"}}")),
        vec!["image_size"]
    );
}
