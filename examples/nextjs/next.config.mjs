import { fileURLToPath } from "node:url";

// The client package is a local dependency (file:../../clients/js, a symlink): the build's
// root is the repository, so Turbopack may follow it there.
const root = fileURLToPath(new URL("../..", import.meta.url));

/** @type {import("next").NextConfig} */
export default { reactStrictMode: true, turbopack: { root }, outputFileTracingRoot: root };
