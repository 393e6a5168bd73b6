import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
const [cmd, ...args] = process.argv.slice(2);
for (let i=0;i<5;i++){
const t0 = performance.now();
const tr = new StdioClientTransport({ command: process.execPath, args: [cmd, ...args], env: { ...process.env }, stderr: "inherit" });
const c = new Client({ name: "p", version: "1" });
await c.connect(tr);
await c.listTools();
const t1 = performance.now();
let lat=[];
for (let j=0;j<300;j++){const a=performance.now(); await c.callTool({name:"whoami",arguments:{}}); lat.push(performance.now()-a);}
lat.sort((a,b)=>a-b);
console.log("cold", (t1-t0).toFixed(1), "whoami p50", lat[150].toFixed(3));
await c.close();
}
