# koa-faas container image.
#   docker build -t koa-faas .
#   docker run --rm -p 3000:3000 -v "$PWD/functions:/app/functions:ro" koa-faas
# With podman, build with `--format docker`: the OCI format has no HEALTHCHECK and podman drops it.

# ---- build: dev dependencies + TypeScript → dist/ ----
FROM node:20-bookworm-slim AS build
# better-sqlite3 (the embedded store) compiles its native addon against Node's headers.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY scripts/build-assets.mjs scripts/newest.mjs ./scripts/
COPY src ./src
# The web console's sources: npm run build bundles them into dist/ui (served at /_/ui/).
COPY ui ./ui
COPY functions ./functions
# tsconfig.json also includes test/ and bench/; they are not copied (see .dockerignore) and tsc
# only needs src/ to produce dist/src/. The chmod makes what the run stage copies readable by
# `node` even from a build context checked out with a restrictive umask (done here, not in the
# run stage, where a chmod -R would duplicate every file into another layer).
RUN npm run build && npm prune --omit=dev && chmod -R a+rX dist functions node_modules

# ---- run: production dependencies + dist + functions, as the unprivileged `node` user ----
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    FUNCTIONS_DIR=/app/functions \
    DATA_DIR=/app/data \
    LOG_FORMAT=json
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies as the build stage compiled them (better-sqlite3's addon included): the
# run stage needs no compiler. The code (dist, node_modules, package files) stays owned by root,
# read-only to `node`.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/ui ./dist/ui
# functions/ belongs to `node`: with ADMIN_TOKEN set, PUT/DELETE /_/functions/<name> write here.
# A folder mounted over it (`-v ./functions:/app/functions:ro`) brings its own permissions.
COPY --from=build --chown=node:node /app/functions ./functions
# data/ belongs to `node` too: the embedded store (KV, secrets) in SQLite. Mount a volume here to
# keep it across containers (or set REDIS_URL).
RUN mkdir /app/data && chown node:node /app/data
VOLUME /app/data
USER node
EXPOSE 3000
# No curl in the slim image: probe /_/health with node itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('http').get({host:'127.0.0.1',port:process.env.PORT||3000,path:'/_/health',timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# node as PID 1 (no npm, no shell): SIGTERM reaches the server, which drains and exits 0.
CMD ["node", "dist/src/main.js"]
