import type { ReactNode } from "react";

export const metadata = { title: "Scout · Lakeside Motors" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ margin: 0, font: "15px/1.45 system-ui, sans-serif", background: "#f6f8fa",
                     color: "#1f2328" }}>
        {children}
      </body>
    </html>
  );
}
