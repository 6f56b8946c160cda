# A Rack app for puma (root_conformance_servers): `/item/<n>` answers n bytes with a length,
# `/stream/<n>` n lines from a body that yields them one by one (no length: puma sends it
# chunked), `POST /echo` the size of its body (201), anything else a 404.
class Lines
  def initialize(n)
    @n = n
  end

  def each
    @n.times { |i| yield format("line %04d\n", i) }
  end
end

run(lambda do |env|
  case env["PATH_INFO"]
  when %r{\A/item/(\d+)\z}
    n = Regexp.last_match(1).to_i
    [200, { "Content-Type" => "text/plain", "Content-Length" => n.to_s }, ["r" * n]]
  when %r{\A/stream/(\d+)\z}
    [200, { "Content-Type" => "text/plain" }, Lines.new(Regexp.last_match(1).to_i)]
  when "/echo"
    size = env["rack.input"].read.bytesize.to_s
    [201, { "Content-Type" => "text/plain", "Content-Length" => size.bytesize.to_s }, [size]]
  else
    [404, { "Content-Type" => "text/plain", "Content-Length" => "9" }, ["not found"]]
  end
end)
