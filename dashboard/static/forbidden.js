// The page for a refused or unknown address: translated like the others, no detail of what exists.
"use strict";
SE.start().catch(async () => {
  await SE.loadCatalogue(localStorage.getItem("sharpeye.locale") || "zh-CN");
  SE.applyI18n();
});
