// A small, safe Markdown subset for consent and instruction texts written by researchers:
// headings, paragraphs, lists, **bold**, *italic*, `code`, [links](url), ![images](url).
// Everything is HTML-escaped first, so study text can never inject markup or scripts.

function escapeHtml(text) {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function safeUrl(url) {
  return /^(https?:\/\/|\/(?!\/)|\.\/|[\w-]+\.(png|jpe?g|webp|gif)$)/i.test(url) ? url : "#";
}

function inline(text) {
  return escapeHtml(text)
    .replace(/!\[([^\]]*)\]\(([^)\s]+)\)/g, (_m, alt, url) =>
      `<img src="${safeUrl(url)}" alt="${alt}" class="md-image">`)
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (_m, label, url) =>
      `<a href="${safeUrl(url)}" target="_blank" rel="noopener noreferrer">${label}</a>`)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
}

/** Render `source` to an HTML string (block structure: blank-line separated). */
export function renderMarkdown(source) {
  const blocks = String(source || "").replace(/\r\n?/g, "\n").split(/\n\s*\n/);
  return blocks
    .map((block) => block.trim())
    .filter(Boolean)
    .map((block) => {
      const heading = block.match(/^(#{1,4})\s+(.*)$/);
      if (heading && !block.includes("\n")) {
        const level = Math.min(heading[1].length + 1, 5); // the page title is the only h1
        return `<h${level}>${inline(heading[2])}</h${level}>`;
      }
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*[-*]\s+/.test(l))) {
        return `<ul>${lines.map((l) => `<li>${inline(l.replace(/^\s*[-*]\s+/, ""))}</li>`).join("")}</ul>`;
      }
      if (lines.every((l) => /^\s*\d+[.)]\s+/.test(l))) {
        return `<ol>${lines.map((l) => `<li>${inline(l.replace(/^\s*\d+[.)]\s+/, ""))}</li>`).join("")}</ol>`;
      }
      return `<p>${lines.map(inline).join(" ")}</p>`; // soft line breaks, as in CommonMark
    })
    .join("\n");
}
