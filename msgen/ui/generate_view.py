"""Generate tab's result views: ``gr.HTML`` components that paint a live update's payload.

Each view's value is plain data from ``GenerateHandlers`` (the same values the ``/generate``
API returns): the image and the channel view are BMP ``data:`` URIs, the cards a list of
``{"level", "channels", "caption", "image"}``, the statistics ``{"headers", "data"}``. The
browser turns them into HTML with the component's template, so a slider move is one response
and no picture is fetched on its own; Gradio patches the page's existing elements in place (an
``img`` keeps its node and gets a new ``src``). Pictures arrive at native size and CSS enlarges
them nearest-neighbour (``image-rendering: pixelated``). Small scripts give the image its
download and fullscreen buttons and let a click enlarge a card (kept in the script and put back
after each update, so the enlarged card stays enlarged while the seed moves).
"""

from __future__ import annotations

import gradio as gr

CSS = """
.msgen-pixelated img, .msgen-pixelated canvas, .msgen-view img { image-rendering: pixelated; }
#msgen-grid .grid-wrap { min-height: 0 !important; max-height: none !important; overflow-y: auto; }
.msgen-view { position: relative; }
.msgen-view .msgen-frame { display: flex; align-items: center; justify-content: center; }
.msgen-view .msgen-frame img { width: 100%; height: 100%; object-fit: contain; }
#msgen-image .msgen-frame { height: 340px; }
#msgen-channel .msgen-frame { height: 200px; }
.msgen-view .msgen-tools { position: absolute; top: 4px; right: 4px; display: flex; gap: 4px; }
.msgen-view .msgen-tools button { padding: 2px 6px; border-radius: 4px; border: 1px solid var(--border-color-primary);
  background: var(--background-fill-primary); cursor: pointer; }
#msgen-levels .msgen-cards { display: grid; gap: 8px; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); }
#msgen-levels figure { margin: 0; cursor: zoom-in; text-align: center; }
#msgen-levels figure img { width: 100%; aspect-ratio: 1; object-fit: contain; }
#msgen-levels figure.zoom { grid-column: 1 / -1; grid-row: 1; cursor: zoom-out; }
#msgen-levels figure.zoom img { max-height: 70vh; }
#msgen-levels figcaption { font-size: var(--text-sm); margin-top: 2px; }
#msgen-stats table { width: 100%; margin: 0; }
"""

# Templates: JS template literals over the component's props (``value``, ``label``).
PICTURE = """<div class="msgen-frame">${value ? `<img src="${value}" alt="${label}">` : ''}</div>"""
IMAGE = PICTURE + """${value ? `<div class="msgen-tools"><button type="button" data-act="download" title="Download"
>&#x2B07;</button><button type="button" data-act="fullscreen" title="Fullscreen">&#x26F6;</button></div>` : ''}"""
CARDS = """<div class="msgen-cards" style="--cols: ${Math.max(1, (value || []).length)}">${(value || []).map(c =>
`<figure data-level="${c.level}"><img src="${c.image}" alt="${c.caption}"
><figcaption>${c.caption}</figcaption></figure>`).join('')}</div>"""
STATS = """${value ? `<table><thead><tr>${value.headers.map(h => `<th>${String(h).replace(/</g, '&lt;')}</th>`).join('')}
</tr></thead><tbody>${value.data.map(row => `<tr>${row.map(x => `<td>${x}</td>`).join('')}</tr>`).join('')}</tbody>
</table>` : ''}"""

IMAGE_JS = """
element.addEventListener('click', (e) => {
  const button = e.target.closest('button[data-act]');
  const img = element.querySelector('img');
  if (!button || !img) return;
  if (button.dataset.act === 'fullscreen') { img.requestFullscreen && img.requestFullscreen(); return; }
  const canvas = document.createElement('canvas');  // the inline picture is a BMP: download a PNG
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  const a = document.createElement('a');
  a.href = canvas.toDataURL('image/png');
  a.download = 'msgen.png';
  a.click();
});
"""
CARDS_JS = """
let zoom = 0;
const apply = () => element.querySelectorAll('figure[data-level]').forEach(
  (card) => card.classList.toggle('zoom', Number(card.dataset.level) === zoom));
element.addEventListener('click', (e) => {
  const card = e.target.closest('figure[data-level]');
  if (!card) return;
  const level = Number(card.dataset.level);
  zoom = zoom === level ? 0 : level;
  apply();
});
watch('value', apply);
"""


def image_view(value: str | None = None) -> gr.HTML:
    """The picture at the requested scale, with download and fullscreen buttons."""
    return gr.HTML(value, label="Image", html_template=IMAGE, js_on_load=IMAGE_JS, apply_default_css=False,
                   show_label=True, container=True, elem_id="msgen-image", elem_classes="msgen-view")


def channel_view(value: str | None = None) -> gr.HTML:
    """One channel of one level, large."""
    return gr.HTML(value, label="One channel", html_template=PICTURE, js_on_load=None, apply_default_css=False,
                   show_label=True, container=True, elem_id="msgen-channel", elem_classes="msgen-view")


def cards_view(value: list[dict] | None = None) -> gr.HTML:
    """Every level's card, coarse to fine; a click shows one large (and a second click puts it back)."""
    return gr.HTML(value, label="Every level, coarse to fine", html_template=CARDS, js_on_load=CARDS_JS,
                   apply_default_css=False, show_label=True, container=True, elem_id="msgen-levels",
                   elem_classes="msgen-view")


def stats_view(value: dict | None = None) -> gr.HTML:
    """The level statistics as a table."""
    return gr.HTML(value, label="Level statistics", html_template=STATS, js_on_load=None, show_label=True,
                   container=True, elem_id="msgen-stats")
