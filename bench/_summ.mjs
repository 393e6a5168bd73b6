import fs from "node:fs";
const p = JSON.parse(fs.readFileSync(process.argv[2]));
const byId = new Map(p.nodes.map(n=>[n.id,n]));
const self = new Map();
const dt = p.timeDeltas; 
const cnt = new Map();
p.samples.forEach((s,i)=>cnt.set(s,(cnt.get(s)||0)+(dt[i]||0)));
const agg = {}; const aggF = {};
for (const [id,t] of cnt) { const n = byId.get(id); let u = n.callFrame.url.replace(/.*node_modules\//,"nm/").replace(/.*\/dist\//,"dist/"); const pk = u.startsWith("nm/") ? u.split("/").slice(0, u.startsWith("nm/@")?3:2).join("/") : u || n.callFrame.functionName; agg[pk]=(agg[pk]||0)+t; const f = n.callFrame.functionName+" "+u+":"+n.callFrame.lineNumber; aggF[f]=(aggF[f]||0)+t;}
const top = (o,k)=>Object.entries(o).sort((a,b)=>b[1]-a[1]).slice(0,k).map(([k,v])=>`${(v/1000).toFixed(1).padStart(8)}ms ${k}`).join("\n");
console.log("total", (p.endTime-p.startTime)/1000);
console.log(top(agg, Number(process.argv[3]||25))); console.log("---"); console.log(top(aggF, Number(process.argv[4]||25)));
