# Renders one ERB file of an Open OnDemand app the way the portal does, for the tests
# (no OnDemand here): form values are strings, reachable as bare methods (submit.yml.erb)
# and through `context` (template/*.erb); the connection values (host, port, password and
# the conn_params) and the session card's values (job_id, cluster_id) as bare methods.
#
#   ruby tests/ood_render.rb FILE VALUES_JSON > rendered
#   VALUES_JSON: {"context": {...}, "connection": {...}, "card": {...}}
#
# A template that raises (submit.yml.erb refusing a choice) exits 1 with its message.
require "erb"
require "json"

# The form's values: `context.partition`.
class FormContext
  def initialize(values)
    values.each { |name, value| define_singleton_method(name) { value.to_s } }
  end
end

# What a template's code sees.
class Scope
  attr_reader :context

  def initialize(values)
    form = values.fetch("context", {})
    @context = FormContext.new(form)
    bare = form.merge(values.fetch("connection", {})).merge(values.fetch("card", {}))
    bare.each { |name, value| define_singleton_method(name) { value.to_s } }
  end

  def render(text)
    ERB.new(text, trim_mode: "-").result(binding)
  end
end

file, values = ARGV
begin
  print Scope.new(JSON.parse(values || "{}")).render(File.read(file))
rescue StandardError => e
  warn "#{File.basename(file)}: #{e.class}: #{e.message}"
  exit 1
end
