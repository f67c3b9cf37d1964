# Debian's Asterisk with res_discovery_consul built in.
#
#   docker build -t asterisk-consul .
#   docker run -it asterisk-consul bash      (then: asterisk -cvvv)
#
# The module is built as the Debian package (debian/, as `make deb` builds it) in a first
# stage and installed with apt in the image, so the image holds exactly what the package
# installs: the module, the asterisk_consul package for Debian's python3, the config.
# docker/asterisk/ then points the module at the compose file's Consul (docker-compose.yml).
ARG DEBIAN_IMAGE=debian:sid

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential debhelper dh-python \
      pybuild-plugin-pyproject python3-dev python3-setuptools python3-cffi asterisk-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . /src/asterisk-consul
RUN cd /src/asterisk-consul && DEB_BUILD_OPTIONS=noautodbgsym dpkg-buildpackage -b -us -uc

FROM ${DEBIAN_IMAGE}
# Asterisk and the package's dependencies (the libpython of the default python3 included) in
# a layer of their own: it stays cached when only the module changes, and the package then
# installs without downloading anything (or fetches what a newer package needs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends asterisk python3-cffi-backend python3-requests \
 && apt-get install -y --no-install-recommends "libpython$(py3versions -dv)" \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/asterisk-consul_*.deb /tmp/
RUN deb=$(ls /tmp/asterisk-consul_*.deb) \
 && { apt-get install -y --no-install-recommends "$deb" \
      || { apt-get update && apt-get install -y --no-install-recommends "$deb"; }; } \
 && rm -rf /tmp/*.deb /var/lib/apt/lists/*
COPY --chown=asterisk:asterisk docker/asterisk/ /etc/asterisk/
COPY docker/entrypoint.sh /usr/local/bin/asterisk-consul-entrypoint
EXPOSE 5060/udp 8088/tcp
ENTRYPOINT ["/usr/local/bin/asterisk-consul-entrypoint"]
# As Debian's asterisk.service runs it: in the foreground, as user asterisk.
CMD ["asterisk", "-f", "-n", "-U", "asterisk", "-G", "asterisk"]
