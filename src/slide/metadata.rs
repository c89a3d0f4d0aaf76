//! Slide metadata read from text headers: Aperio ImageDescription and OME-XML.
//!
//! Pure string parsing; it never touches the file or pixels.

use serde::{Deserialize, Serialize};

use super::Mpp;

/// Where a slide's MPP came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MppSource {
    /// `MPP = ...` in an Aperio ImageDescription.
    AperioDescription,
    /// `PhysicalSizeX/Y` in OME-XML.
    OmeXml,
    /// TIFF X/YResolution with ResolutionUnit centimetre or inch.
    TiffResolution,
    /// DICOM PixelSpacing in the Pixel Measures functional group.
    DicomPixelSpacing,
    /// DICOM ImagedVolumeWidth/Height divided by the total pixel matrix size.
    DicomImagedVolume,
    /// Given by the user (`--mpp`).
    Override,
    /// Not stored anywhere in the file.
    Unknown,
}

impl std::fmt::Display for MppSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            MppSource::AperioDescription => "aperio-description",
            MppSource::OmeXml => "ome-xml",
            MppSource::TiffResolution => "tiff-resolution",
            MppSource::DicomPixelSpacing => "dicom-pixel-spacing",
            MppSource::DicomImagedVolume => "dicom-imaged-volume",
            MppSource::Override => "override",
            MppSource::Unknown => "unknown",
        };
        f.write_str(s)
    }
}

/// What an Aperio ImageDescription says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AperioHeader {
    pub mpp: Option<f64>,
    pub app_mag: Option<f64>,
}

/// True when the description starts like Aperio's (`Aperio Image Library ...`).
pub fn is_aperio(description: &str) -> bool {
    description.starts_with("Aperio")
}

/// Parses the `key = value` fields after the first `|` of an Aperio description.
pub fn parse_aperio(description: &str) -> AperioHeader {
    let mut header = AperioHeader::default();
    for field in description.split('|').skip(1) {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let value = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0);
        match key.trim() {
            "MPP" => header.mpp = value,
            "AppMag" => header.app_mag = value,
            _ => {}
        }
    }
    header
}

/// The label an Aperio associated page carries in its description, if any.
pub fn aperio_associated_name(description: &str) -> Option<&'static str> {
    let first_line = description.lines().nth(1).unwrap_or(description);
    let lower = description.to_ascii_lowercase();
    if lower.contains("label ") || first_line.trim() == "label" || lower.starts_with("label") {
        Some("label")
    } else if lower.contains("macro ") || lower.starts_with("macro") {
        Some("macro")
    } else {
        None
    }
}

/// True when the description is OME-XML.
pub fn is_ome_xml(description: &str) -> bool {
    let head = &description[..description.len().min(4096)];
    head.contains("<OME") && head.contains("openmicroscopy.org")
}

/// PhysicalSizeX/Y of the first `<Pixels>` element, converted to micrometres.
pub fn parse_ome_mpp(xml: &str) -> Option<Mpp> {
    let start = xml.find("<Pixels")?;
    let end = xml[start..].find('>')? + start;
    let element = &xml[start..end];
    let x = attribute(element, "PhysicalSizeX")?.parse::<f64>().ok()?;
    let y = attribute(element, "PhysicalSizeY")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(x);
    let ux = attribute(element, "PhysicalSizeXUnit").unwrap_or("µm");
    let uy = attribute(element, "PhysicalSizeYUnit").unwrap_or("µm");
    Mpp::new(x * unit_to_micrometres(ux)?, y * unit_to_micrometres(uy)?)
}

fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = element;
    while let Some(i) = rest.find(name) {
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = &rest[i + name.len()..];
        let after_trim = after.trim_start();
        if before_ok && after_trim.starts_with('=') {
            let v = after_trim[1..].trim_start();
            let quote = v.chars().next()?;
            if quote == '"' || quote == '\'' {
                let close = v[1..].find(quote)?;
                return Some(&v[1..1 + close]);
            }
            return None;
        }
        rest = after;
    }
    None
}

/// OME length units (the subset microscopes use) in micrometres.
fn unit_to_micrometres(unit: &str) -> Option<f64> {
    match unit {
        "µm" | "um" | "μm" | "micron" => Some(1.0),
        "nm" => Some(1e-3),
        "mm" => Some(1e3),
        "cm" => Some(1e4),
        "m" => Some(1e6),
        "Å" => Some(1e-4),
        _ => None,
    }
}

/// The coarsest resolution taken as a microscope scan, in µm/px.
pub const MAX_SCAN_MPP: f64 = 25.0;

/// MPP from TIFF resolution tags: pixels per unit, unit 2 = inch, 3 = centimetre.
pub fn mpp_from_resolution(x_res: f64, y_res: f64, unit: u16) -> Option<Mpp> {
    let micrometres_per_unit = match unit {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    if !(x_res > 0.0 && y_res > 0.0) {
        return None;
    }
    let mpp = Mpp::new(micrometres_per_unit / x_res, micrometres_per_unit / y_res)?;
    // A "resolution" of 72 or 96 dpi is a screen default and 300 or 600 dpi a print
    // setting (the public-domain skin JPEG carries 300 dpi: 84.7 µm/px), not a
    // microscope scan: ignore anything coarser than 25 µm/px (about 1000 dpi), so
    // such a file asks for --mpp instead of being tiled at a nonsense scale.
    (mpp.x < MAX_SCAN_MPP && mpp.y < MAX_SCAN_MPP).then_some(mpp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aperio_description_gives_mpp_and_magnification() {
        let d = "Aperio Image Library v10.0.50\r\n2220x2967 [0,100 2220x2967] (240x240) JPEG/RGB Q=30|AppMag = 20|StripeWidth = 992|ScanScope ID = CPAPERIOCS|Filename = CMU-1|MPP = 0.4990|Left = 25.691574";
        assert!(is_aperio(d));
        assert_eq!(
            parse_aperio(d),
            AperioHeader {
                mpp: Some(0.499),
                app_mag: Some(20.0)
            }
        );
    }

    #[test]
    fn ome_units_convert_to_micrometres() {
        let xml = r#"<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" PhysicalSizeX="250" PhysicalSizeXUnit="nm" PhysicalSizeY="0.25" SizeX="10"></Pixels></Image></OME>"#;
        assert!(is_ome_xml(xml));
        assert_eq!(parse_ome_mpp(xml), Mpp::new(0.25, 0.25));
    }

    #[test]
    fn screen_dpi_is_not_a_scan_resolution() {
        assert_eq!(mpp_from_resolution(72.0, 72.0, 2), None);
        assert_eq!(mpp_from_resolution(300.0, 300.0, 2), None);
        assert_eq!(mpp_from_resolution(600.0, 600.0, 2), None);
        assert_eq!(
            mpp_from_resolution(20_000.0, 20_000.0, 3),
            Mpp::new(0.5, 0.5)
        );
    }
}
