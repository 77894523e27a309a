"""Generate tab's result view: one ``gr.HTML`` component that paints a whole live update.

Its value is plain data made by ``view_value`` from what ``GenerateHandlers.page`` returns (the
same pictures and table the ``/generate`` API returns): ``{"info", "image", "channel", "cards",
"stats"}``, every picture a lossless WebP ``data:`` URI. The browser turns it into HTML with the
component's template, and Gradio patches the page's existing elements in place (an ``img`` keeps
its node and gets a new ``src``). One component on purpose: Gradio's page does work for every
output of an event, before the request (each output's loading state) and after it (each
component's update). Measured in one run with chromium on our 2-core machine, a number box whose
event returns five small inline pictures into five ``gr.HTML`` outputs took 102 ms p50 from Enter
to painted, the same pictures' first alone into one output 55 ms; five pictures in one output
cost about what one does. So the image, the channel view, every level's card, the statistics and
the summary are one output, and a slider move is one response into one component.

Pictures arrive at native size and CSS enlarges them nearest-neighbour (``image-rendering:
pixelated``). The view's script gives the image its download and fullscreen buttons and lets a
click enlarge a card (kept in the script and put back after each update, so the enlarged card
stays enlarged while the seed moves). Text is escaped here, in Python: the template inserts it.
"""

from __future__ import annotations

import html
import re

import gradio as gr

CSS = """
.msgen-pixelated img, .msgen-pixelated canvas, #msgen-view img { image-rendering: pixelated; }
#msgen-grid .grid-wrap { min-height: 0 !important; max-height: none !important; overflow-y: auto; }
#msgen-view .msgen-top { display: grid; grid-template-columns: 3fr 2fr; gap: 12px; }
@media (max-width: 700px) { #msgen-view .msgen-top { grid-template-columns: 1fr; } }
#msgen-view .msgen-box { position: relative; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-lg); padding: 6px; }
#msgen-view .msgen-label { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
#msgen-view .msgen-frame { display: flex; align-items: center; justify-content: center; }
#msgen-view .msgen-frame img { width: 100%; height: 100%; object-fit: contain; }
#msgen-image .msgen-frame { height: 340px; }
#msgen-channel .msgen-frame { height: 300px; }
#msgen-view .msgen-tools { position: absolute; top: 6px; right: 6px; display: flex; gap: 4px; }
#msgen-view .msgen-tools button { padding: 2px 6px; border-radius: 4px; border: 1px solid var(--border-color-primary);
  background: var(--background-fill-primary); cursor: pointer; }
#msgen-info { margin: 0 0 8px; }
#msgen-view .msgen-legend { font-size: var(--text-sm); margin: 10px 0 6px; }
#msgen-levels .msgen-cards { display: grid; gap: 8px; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); }
#msgen-levels figure { margin: 0; cursor: zoom-in; text-align: center; }
#msgen-levels figure img { width: 100%; aspect-ratio: 1; object-fit: contain; }
#msgen-levels figure.zoom { grid-column: 1 / -1; grid-row: 1; cursor: zoom-out; }
#msgen-levels figure.zoom img { max-height: 70vh; }
#msgen-levels figcaption { font-size: var(--text-sm); margin-top: 2px; }
#msgen-stats { margin-top: 10px; }
#msgen-stats table { width: 100%; margin: 0; }
"""

CARD_LEGEND = (
    "Each level's card: <b>top left</b> the picture at that scale, <b>top middle</b> all its channels "
    "projected on their three main directions (PCA -> RGB), <b>then</b> its seven most active "
    "channels, strongest first, each scaled to its own range (dark blue low, yellow high). "
    "A model that builds its picture from parts (such as token maps) shows them after the PCA view "
    "in place of as many channels; the card's caption names its tiles. Click a card to see it large."
)

# The template: a JS template literal over the component's ``value`` (text in it is already escaped).
PAGE = """${value ? `<div id="msgen-info">${value.info}</div>
<div class="msgen-top">
<div id="msgen-image" class="msgen-box"><span class="msgen-label">Image</span>
<div class="msgen-frame"><img src="${value.image}" alt="the generated picture"></div>
<div class="msgen-tools"><button type="button" data-act="download" title="Download">&#x2B07;</button
><button type="button" data-act="fullscreen" title="Fullscreen">&#x26F6;</button></div></div>
<div id="msgen-channel" class="msgen-box"><span class="msgen-label">One channel (the picker's level and channel)</span>
<div class="msgen-frame"><img src="${value.channel}" alt="one channel"></div></div>
</div>
<div class="msgen-legend">""" + CARD_LEGEND + """</div>
<div id="msgen-levels"><span class="msgen-label">Every level, coarse to fine</span>
<div class="msgen-cards" style="--cols: ${Math.max(1, value.cards.length)}">${value.cards.map(c =>
`<figure data-level="${c.level}"><img src="${c.image}" alt="${c.caption}"><figcaption>${c.caption}</figcaption></figure>`
).join('')}</div></div>
<div id="msgen-stats"><span class="msgen-label">Level statistics</span><table><thead><tr>${value.stats.headers.map(h =>
`<th>${h}</th>`).join('')}</tr></thead><tbody>${value.stats.data.map(row =>
`<tr>${row.map(x => `<td>${x}</td>`).join('')}</tr>`).join('')}</tbody></table></div>` : ''}"""

PAGE_JS = """
let zoom = 0;
const apply = () => element.querySelectorAll('#msgen-levels figure[data-level]').forEach(
  (card) => card.classList.toggle('zoom', Number(card.dataset.level) === zoom));
element.addEventListener('click', (e) => {
  const button = e.target.closest('#msgen-image button[data-act]');
  if (button) {
    const img = element.querySelector('#msgen-image img');
    if (!img) return;
    if (button.dataset.act === 'fullscreen') { img.requestFullscreen && img.requestFullscreen(); return; }
    const canvas = document.createElement('canvas');  // the inline picture is a WebP: download a PNG
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    canvas.getContext('2d').drawImage(img, 0, 0);
    const a = document.createElement('a');
    a.href = canvas.toDataURL('image/png');
    a.download = 'msgen.png';
    a.click();
    return;
  }
  const card = e.target.closest('#msgen-levels figure[data-level]');
  if (!card) return;
  const level = Number(card.dataset.level);
  zoom = zoom === level ? 0 : level;
  apply();
});
watch('value', apply);
"""


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _markdown_bold(text: str) -> str:
    """The summary's ``**name**`` as bold, everything else escaped."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _text(text))


def view_value(image: str, cards: list[dict], table: dict, info: str, channel: str) -> dict:
    """``GenerateHandlers.page``'s five values as the view's one value, its text escaped."""
    return {
        "info": _markdown_bold(info),
        "image": image,
        "channel": channel,
        "cards": [{"level": int(c["level"]), "caption": _text(c["caption"]), "image": c["image"]} for c in cards],
        "stats": {"headers": [_text(h) for h in table["headers"]],
                  "data": [[_text(x) for x in row] for row in table["data"]]},
    }


def page_view(value: dict | None = None) -> gr.HTML:
    """The image, the channel view, every level's card and the statistics, in one component."""
    return gr.HTML(value, html_template=PAGE, js_on_load=PAGE_JS, apply_default_css=False, show_label=False,
                   container=False, elem_id="msgen-view")
