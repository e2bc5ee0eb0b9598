# The client matrix's Ruby client: Net::HTTP.
#
# Usage: ruby clients.rb, with the plan in MATRIX_PLAN (see matrix_test.go). Net::HTTP.new reads the
# proxy from http_proxy (user:password too) -- for https:// URLs as well: it never reads
# https_proxy. Trust in the local CA comes from SSL_CERT_FILE. Prints one JSON line per case.
require 'json'
require 'net/http'
require 'digest'

plan = JSON.parse(ENV.fetch('MATRIX_PLAN'))
sessions = {}

def report(name, status, error, body, resp)
  puts JSON.generate(case: name, status: status, error: error.to_s, body_sha256: Digest::SHA256.hexdigest(body.to_s),
                     proxy_error: resp ? resp['X-Payrails-Proxy-Error'].to_s : '', content_encoding: resp ? resp['Content-Encoding'].to_s : '')
  $stdout.flush
end

plan['cases'].each do |c|
  resp = nil
  begin
    c['urls'].each do |url|
      u = URI(url)
      key = [u.scheme, u.host, u.port]
      http = sessions[key] ||= begin
        h = Net::HTTP.new(u.host, u.port) # the proxy: http_proxy, from the environment
        h.use_ssl = u.scheme == 'https'
        h.open_timeout = 10
        h.read_timeout = 30
        h.start # kept open: requests on it share one connection
        h
      end
      req = case c['name']
            when 'post'
              r = Net::HTTP::Post.new(u)
              r['Content-Type'] = 'application/json'
              r['X-Idempotency-Key'] = plan['idem']
              r.body = plan['json']
              r
            when 'upload'
              r = Net::HTTP::Post.new(u)
              r['Content-Type'] = 'application/octet-stream'
              r.body = File.binread(plan['upload'])
              r
            when 'chunked'
              r = Net::HTTP::Post.new(u)
              r['Content-Type'] = 'application/octet-stream'
              r['Transfer-Encoding'] = 'chunked'
              r.body_stream = File.open(plan['upload'], 'rb')
              r
            else
              Net::HTTP::Get.new(u) # asks for gzip and decodes it itself
            end
      resp = http.request(req)
    end
    report(c['name'], resp.code.to_i, '', resp.body, resp)
  rescue StandardError => e
    sessions.clear
    report(c['name'], 0, "#{e.class}: #{e.message}", '', nil)
  end
end
