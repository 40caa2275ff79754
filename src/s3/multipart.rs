//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload and ListParts. Parts and their bookkeeping are the backend's; this
//! module reads the requests and writes S3's answers.

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};

use super::error::S3Error;
use super::put::{body_size, put_options};
use super::response::{empty, with_etag, xml_response};
use super::service::{RequestBody, header_str, parse_key};
use super::signature::ChecksumHeaders;
use super::xml::{self, NAMESPACE};
use crate::storage::registry::Resolved;

/// CreateMultipartUpload: starts an upload (with the object's content type) and returns its id.
pub(super) async fn create(
    backend: &Resolved,
    bucket: String,
    key: String,
    headers: &HeaderMap,
) -> Result<Response, S3Error> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str());
    let upload_id = backend
        .backend
        .create_multipart(&parse_key(&key)?, content_type)
        .await?;
    let body = xml::to_xml(
        "InitiateMultipartUploadResult",
        &xml::InitiateMultipartUploadResult {
            xmlns: NAMESPACE,
            bucket,
            key,
            upload_id,
        },
    );
    Ok(xml_response(StatusCode::OK, body))
}

/// UploadPart: streams one verified part to the backend.
pub(super) async fn upload_part(
    backend: &Resolved,
    key: &str,
    upload_id: &str,
    part_number: u32,
    headers: &HeaderMap,
    body: RequestBody<'_>,
) -> Result<Response, S3Error> {
    let size = body_size(headers);
    let (body, content_md5) = body.object_stream(ChecksumHeaders::DescribeBody)?;
    let part = backend
        .backend
        .upload_part(
            &parse_key(key)?,
            upload_id,
            part_number,
            body,
            size,
            content_md5,
        )
        .await?;
    Ok(with_etag(empty(StatusCode::OK), &part.etag))
}

/// CompleteMultipartUpload: the listed parts, in order, become the object (with the put
/// options of PutObject). Its checksum headers describe the object, not this XML body.
pub(super) async fn complete(
    backend: &Resolved,
    bucket: String,
    key: String,
    upload_id: &str,
    headers: &HeaderMap,
    body: RequestBody<'_>,
) -> Result<Response, S3Error> {
    let body = body.xml(ChecksumHeaders::DescribeObject).await?;
    let request: xml::CompleteMultipartUpload =
        xml::from_xml(&body).map_err(S3Error::MalformedXml)?;
    if request.part.is_empty() {
        return Err(S3Error::MalformedXml("no parts were listed".into()));
    }
    let parts_list: Vec<(u32, String)> = request
        .part
        .into_iter()
        .map(|p| (p.part_number, p.etag))
        .collect();
    let opts = put_options(headers)?;
    let meta = backend
        .backend
        .complete_multipart(&parse_key(&key)?, upload_id, &parts_list, &opts)
        .await?;
    let body = xml::to_xml(
        "CompleteMultipartUploadResult",
        &xml::CompleteMultipartUploadResult {
            xmlns: NAMESPACE,
            location: format!("/{bucket}/{key}"),
            bucket,
            key,
            etag: meta.etag,
        },
    );
    Ok(xml_response(StatusCode::OK, body))
}

/// AbortMultipartUpload: the backend drops the upload and its parts.
pub(super) async fn abort(
    backend: &Resolved,
    key: &str,
    upload_id: &str,
) -> Result<Response, S3Error> {
    backend
        .backend
        .abort_multipart(&parse_key(key)?, upload_id)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// ListParts: every part uploaded so far, in one page.
pub(super) async fn list_parts(
    backend: &Resolved,
    bucket: String,
    key: String,
    upload_id: String,
) -> Result<Response, S3Error> {
    let parts_list = backend
        .backend
        .list_parts(&parse_key(&key)?, &upload_id)
        .await?;
    let body = xml::to_xml(
        "ListPartsResult",
        &xml::ListPartsResult {
            xmlns: NAMESPACE,
            bucket,
            key,
            upload_id,
            max_parts: 10_000,
            is_truncated: false,
            part: parts_list
                .into_iter()
                .map(|p| xml::Part {
                    part_number: p.part_number,
                    last_modified: xml::timestamp(p.last_modified),
                    etag: p.etag,
                    size: p.size,
                })
                .collect(),
        },
    );
    Ok(xml_response(StatusCode::OK, body))
}
