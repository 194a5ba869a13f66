# Duragent: `duragent serve` in a slim Python image, with the PostgreSQL and S3 backends.
#
#   docker build -t duragent .
#   docker run -p 8080:8080 -v "$PWD:/workspace" -e DURAGENT_API_TOKEN -e DURAGENT_ADMIN_TOKEN duragent
#
# /workspace is the folder `duragent init` made (duragent.yaml + .duragent/, the data directory).
# Binding 0.0.0.0 needs server.api_token and admin.token in duragent.yaml (see docs/scaling-out.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git: the data directory is a git repository by default (the committer runs git).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY duragent ./duragent
RUN pip install ".[postgres,s3]" && rm -rf /src

RUN useradd --create-home --uid 10001 --user-group duragent \
    && mkdir /workspace \
    && chown duragent:duragent /workspace
USER duragent
WORKDIR /workspace
VOLUME ["/workspace"]

EXPOSE 8080
# /readyz answers 503 while an agent file is invalid or the session store unreachable; urlopen
# raises on it, so the check fails. Python's urllib: no curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DURAGENT_PORT', '8080') + '/readyz', timeout=4)"]

ENTRYPOINT ["duragent"]
CMD ["serve", "--host", "0.0.0.0"]
