"""The Animate Anyone model's parts: pose guider, reference attention, the two UNets, sizes,
checkpoint import. The pipeline that assembles them is `animate_anyone.pipeline` (above this
package: nothing here imports it)."""
