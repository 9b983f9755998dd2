// Infinite scroll for the nijifeed timeline: when the "Older posts" link comes near the viewport, fetch that page
// and append its posts. Without JavaScript the link is plain paging. No inline script: the page's CSP forbids it.
"use strict";

// An avatar is loaded from X (or the configured media host); when it is gone, show the author's initial instead.
document.addEventListener("error", function (event) {
  const img = event.target;
  if (img instanceof HTMLImageElement && img.classList.contains("avatar")) {
    const initial = document.createElement("span");
    initial.className = "avatar initial";
    initial.setAttribute("aria-hidden", "true");
    initial.textContent = img.dataset.initial || "?";
    img.replaceWith(initial);
  }
}, true);

(function () {
  const feed = document.getElementById("feed");
  let pager = document.querySelector("nav.pager a.more");
  if (!feed || !pager || !("IntersectionObserver" in window) || !("fetch" in window)) {
    return;
  }
  let loading = false;

  async function loadMore(observer) {
    loading = true;
    try {
      const response = await fetch(pager.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const post of page.querySelectorAll("#feed > article.post")) {
        if (!document.getElementById(post.id)) {
          feed.append(document.adoptNode(post));
        }
      }
      const next = page.querySelector("nav.pager a.more");
      if (next) {
        pager.href = next.getAttribute("href");
        observer.unobserve(pager); // observe again: fires at once if the link is still in view
        observer.observe(pager);
      } else {
        observer.disconnect();
        pager.closest("nav").remove();
        pager = null;
      }
    } catch (error) {
      observer.disconnect();
      pager.textContent = "Older posts (loading failed: tap to open)";
    } finally {
      loading = false;
    }
  }

  const observer = new IntersectionObserver(function (items) {
    if (pager && !loading && items.some((item) => item.isIntersecting)) {
      loadMore(observer);
    }
  }, { rootMargin: "1200px 0px" });
  observer.observe(pager);
})();
