# The steer daemon, installed once when the image is built (a regular install of the
# checkout, as the README's), run as the unprivileged user `steer`. docker-compose.yml
# runs it with STEER_HOME and the workspace bind-mounted from the host.
FROM python:3.11-slim

# The same uid and gid as the host user, so that the token and daemon.json it writes
# into the bind-mounted STEER_HOME are the host user's (and stay 0600).
ARG STEER_UID=1000
ARG STEER_GID=1000
RUN groupadd --gid "$STEER_GID" steer \
    && useradd --uid "$STEER_UID" --gid steer --create-home --shell /usr/sbin/nologin steer

COPY . /tmp/steer
RUN pip install --no-cache-dir --disable-pip-version-check /tmp/steer && rm -rf /tmp/steer

USER steer
# Inside the container the API listens on every interface (the compose file publishes
# it on the host's loopback only, at the same port, so daemon.json's
# http://127.0.0.1:PORT and the guard's Host check hold on the host too).
ENV STEER_HOME=/home/steer/.steer \
    STEER_HOST=0.0.0.0 \
    STEER_PORT=7820
WORKDIR /home/steer
EXPOSE 7820
CMD ["steer", "daemon"]
