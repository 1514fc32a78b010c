// Typeset every formula with the KaTeX copied into the site (no CDN): Markdown pages carry
// \( \) and \[ \] from pymdownx.arithmatex; the notebooks carry $ and $$ as Jupyter writes them.
function typeset() {
  const delimiters = [
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
  ];
  const dollars = [
    { left: "$$", right: "$$", display: true },
    { left: "$", right: "$", display: false },
  ];
  renderMathInElement(document.body, { delimiters, throwOnError: false });
  for (const notebook of document.querySelectorAll(".jupyter-wrapper")) {
    renderMathInElement(notebook, { delimiters: dollars, throwOnError: false });
  }
}
if (typeof document$ !== "undefined") {
  document$.subscribe(typeset);
} else {
  document.addEventListener("DOMContentLoaded", typeset);
}
