// The gateway serves the built client to its own pages (/static/scout-client.js): one
// client, not two. tests/integration/test_client_package.py checks the copy is current.
import { copyFileSync } from "node:fs";

copyFileSync(new URL("../dist/index.js", import.meta.url),
             new URL("../../../gateway/static/scout-client.js", import.meta.url));
