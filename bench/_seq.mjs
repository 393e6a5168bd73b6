const mods = process.argv.slice(2);
let t = performance.now();
for (const m of mods) { const x = await import(m); if (m==='libsodium-wrappers') await x.default.ready; const n = performance.now(); console.log(m, (n-t).toFixed(1)); t = n; }
