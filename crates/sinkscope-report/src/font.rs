//! The bundled font.
//!
//! Why a bundled font with plotters' `ab_glyph` feature (and not plotters' default `ttf`
//! feature or an SVG-to-PNG renderer such as `resvg`): `ttf` goes through `font-kit`, which
//! looks fonts up on the system (fontconfig), so a machine without fonts (CI containers)
//! renders PNGs without text or fails; `resvg` would add a second renderer (usvg, tiny-skia,
//! rustybuzz, fontdb) to build on every machine and still needs a font. `ab_glyph` with one
//! bundled TTF keeps one drawing code path for SVG and PNG, needs nothing from the system,
//! and gives the same pixels everywhere. The font is DejaVu Sans 2.37 from Debian's
//! `fonts-dejavu-core` package (Bitstream Vera licence, permissive; see `NOTICE` and
//! `assets/DejaVuSans.LICENSE`). The SVGs name the generic family `sans-serif` and let the
//! viewer pick its own sans-serif font.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use crate::ReportError;

/// DejaVu Sans (Bitstream Vera licence), embedded so PNG text needs no system font.
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The font families the plots use; all map to [`DEJAVU_SANS`].
const FAMILIES: [&str; 3] = ["sans-serif", "serif", "monospace"];

static REGISTERED: OnceLock<bool> = OnceLock::new();

/// Registers the bundled font with plotters (once per process).
///
/// # Errors
/// [`ReportError::Plot`] if the embedded font cannot be parsed (it always can).
pub(crate) fn ensure_registered() -> Result<(), ReportError> {
    let ok = *REGISTERED.get_or_init(|| {
        FAMILIES.iter().all(|family| {
            [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique]
                .into_iter()
                .all(|style| register_font(family, style, DEJAVU_SANS).is_ok())
        })
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Plot {
            plot: "font".into(),
            message: "the bundled DejaVuSans.ttf could not be registered".into(),
        })
    }
}

/// The bundled font for [`crate::png_backend::PngBackend`].
///
/// # Errors
/// [`ReportError::Plot`] if the embedded font cannot be parsed (it always can).
pub(crate) fn font_ref() -> Result<ab_glyph::FontRef<'static>, ReportError> {
    ab_glyph::FontRef::try_from_slice(DEJAVU_SANS).map_err(|e| ReportError::Plot {
        plot: "font".into(),
        message: format!("the bundled DejaVuSans.ttf could not be parsed: {e}"),
    })
}
